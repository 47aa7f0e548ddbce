"""Notifications (issue 16): [[notify]] targets hear of failed, succeeded, recovered runs; mail goes
through a sendmail (here a fake one that records what it gets) or, with no MTA, into an mbox; a
failing notifier is retried and never blocks runs; a notification due when taskhubd is killed is
delivered after the restart, once; `taskhubctl notify test` sends samples."""

import email
import email.policy
import glob
import json
import os
import signal
import stat
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

FAST = """
[notifications]
retry_delay = "100ms"
timeout = "10s"
"""


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + textwrap.dedent(body))
    os.chmod(path, 0o755)


class NotifyTest(harness.DaemonTestCase):
    def fake_sendmail(self, d):
        """A sendmail that records each mail as mail.N.eml and its argv as mail.N.argv in d.work."""
        path = os.path.join(d.dir, "sendmail")
        write_script(path, """\
            n=$(date +%%s%%N)
            printf '%%s\\n' "$@" > %(w)s/mail.$n.argv
            cat > %(w)s/mail.$n.tmp && mv %(w)s/mail.$n.tmp %(w)s/mail.$n.eml
            """ % {"w": d.work})
        return path

    def mails(self, d):
        out = []
        for p in sorted(glob.glob(os.path.join(d.work, "mail.*.eml"))):
            with open(p, "rb") as f:
                raw = f.read()
            with open(p[:-4] + ".argv") as f:
                argv = f.read().split("\n")[:-1]
            out.append((email.message_from_bytes(raw, policy=email.policy.default), raw, argv))
        return out

    def notifications(self, d, run_id):
        return d.ctl_ok("show", run_id).get("notifications", [])

    def wait_notification(self, d, run_id, state="sent", count=1):
        def check():
            notes = self.notifications(d, run_id)
            return notes if len([n for n in notes if n["state"] == state]) >= count else None
        return harness.wait_until(check, what="%d %s notification(s) of %s" % (count, state, run_id))

    # ---- mail ----

    def test_failed_run_mails_with_the_log_tail(self):
        d = self.daemon()
        sendmail = self.fake_sendmail(d)
        with open(d.config, "a") as f:
            f.write(FAST + 'sendmail = "%s"\nmail_from = "taskhub@test.example"\nlog_lines = 3\n' % sendmail)
        d.write_workflow("nightly-backup", """\
            [[notify]]
            mail = "ops@example.org, root"

            [[task]]
            id = "dump"
            plugin = "shell"
            command = "for i in 1 2 3 4 5 6; do echo line$i; done; exit 2"
            """)
        d.start()
        rc, run, _ = d.ctl("run", "nightly-backup", "--wait")
        self.assertEqual(rc, 1)
        notes = self.wait_notification(d, run["id"])
        self.assertEqual(len(notes), 1)
        n = notes[0]
        self.assertEqual((n["event"], n["kind"], n["target"], n["attempts"]),
                         ("failure", "mail", "mail: ops@example.org, root", 1))
        self.assertIso(n["sent"], "sent")
        mails = self.mails(d)
        self.assertEqual(len(mails), 1)
        msg, raw, argv = mails[0]
        self.assertEqual(argv, ["-t", "-oi"])
        self.assertEqual(msg["To"], "ops@example.org, root")
        self.assertEqual(msg["From"], "taskhub@test.example")
        self.assertEqual(msg["Subject"], "[taskhub] nightly-backup failed: run %s" % run["id"])
        self.assertEqual(msg["X-TaskHub-Event"], "failure")
        self.assertEqual(msg["X-TaskHub-Notification-Id"], n["id"])
        self.assertIn("charset=UTF-8", msg["Content-Type"].replace('"', ""))
        self.assertTrue(msg["Message-ID"].startswith("<"))
        body = msg.get_content()
        self.assertIn("Workflow:   nightly-backup", body)
        self.assertIn("--- task dump:", body)
        self.assertIn("line4\nline5\nline6\n", body)
        self.assertNotIn("line3", body, "log_lines = 3: only the last three lines")
        self.assertIn("NOTIFY_SENT failure mail: ops@example.org, root for %s" % run["id"], d.log())

    def test_hostile_task_output_does_not_inject_mail_headers(self):
        d = self.daemon()
        sendmail = self.fake_sendmail(d)
        with open(d.config, "a") as f:
            f.write(FAST + 'sendmail = "%s"\nlog_lines = 1000\n' % sendmail)
        # The task's output carries CR/LF and header lines and is huge.
        write_script(os.path.join(d.work, "evil.sh"), """\
            printf 'x\\r\\nBcc: victim@example.org\\r\\n\\r\\nFrom evil\\n'
            head -c 3000000 /dev/zero | tr '\\0' 'A'
            echo
            printf 'Subject: pwned\\r\\nBcc: v@x\\n'
            exit 1
            """)
        d.write_workflow("hostile", """\
            [[notify]]
            mail = "ops@example.org"

            [[task]]
            id = "evil"
            plugin = "shell"
            command = "sh %s/evil.sh"
            """ % d.work)
        d.start()
        rc, run, _ = d.ctl("run", "hostile", "--wait")
        self.assertEqual(rc, 1)
        self.wait_notification(d, run["id"])
        (msg, raw, _), = self.mails(d)
        headers = raw.split(b"\n\n", 1)[0]
        self.assertNotIn(b"\r", headers)
        self.assertEqual(msg.get_all("Bcc"), None, "no Bcc header may be injected")
        self.assertEqual(msg.get_all("To"), ["ops@example.org"])
        self.assertEqual(len(msg.get_all("Subject")), 1)
        self.assertLessEqual(len(raw) - len(headers), 64 * 1024 + 2, "the body is bounded")

    def test_no_mta_writes_an_mbox_and_warns_at_start(self):
        d = self.daemon(extra_config='\n[[notify]]\nmail = "root"\n[notifications]\nsendmail = "/nonexistent/sendmail"\n')
        d.write_workflow("failing", """\
            [[task]]
            id = "bad"
            plugin = "shell"
            command = "echo it broke; exit 1"
            """)
        d.start()
        mbox = os.path.join(d.state_dir, "mail", "undelivered.mbox")
        harness.wait_until(lambda: "NOTIFY_NO_MTA" in d.log(), what="the NOTIFY_NO_MTA warning")
        self.assertIn("/nonexistent/sendmail", d.log())
        self.assertIn(mbox, d.log())
        status = d.ctl_ok("status")
        self.assertEqual(status["notifications"]["mbox"], mbox)
        rc, run, _ = d.ctl("run", "failing", "--wait")
        self.assertEqual(rc, 1)
        notes = self.wait_notification(d, run["id"])
        self.assertIn(mbox, notes[0]["last_error"], "show says where the mail went")
        self.assertEqual(stat.S_IMODE(os.stat(mbox).st_mode), 0o600)
        with open(mbox) as f:
            text = f.read()
        self.assertTrue(text.startswith("From taskhub"), text[:100])
        self.assertIn("Subject: [taskhub] failing failed: run %s" % run["id"], text)
        self.assertIn("it broke", text)
        text_status = d.ctl_ok("status", json=False)
        self.assertIn("mail is written to " + mbox, text_status)

    def test_delivery_threads_start_with_the_first_delivery(self):
        """An idle daemon runs no delivery thread (they cost it memory); the first mail starts one."""
        d = self.daemon()
        sendmail = self.fake_sendmail(d)
        with open(d.config, "a") as f:
            f.write(FAST + 'sendmail = "%s"\n' % sendmail)
        d.write_workflow("failing", """\
            [[notify]]
            mail = "ops@example.org"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """)
        d.start()

        def delivery_threads():
            names = []
            for tid in os.listdir("/proc/%d/task" % d.proc.pid):
                with open("/proc/%d/task/%s/comm" % (d.proc.pid, tid)) as f:
                    names.append(f.read().strip())
            return names.count("taskhubd-notify")

        self.assertEqual(delivery_threads(), 0)
        rc, run, _ = d.ctl("run", "failing", "--wait")
        self.assertEqual(rc, 1)
        self.wait_notification(d, run["id"])
        self.assertEqual(len(self.mails(d)), 1)
        self.assertEqual(delivery_threads(), 1, "one mail, one thread")

    # ---- command ----

    def test_command_gets_the_facts_in_env_and_json_on_stdin(self):
        d = self.daemon(extra_config=FAST)
        d.write_workflow("wf", """\
            [[notify]]
            on = ["failure"]
            command = "env > %(w)s/env; cat > %(w)s/stdin"

            [[task]]
            id = "ok"
            plugin = "shell"
            command = "true"

            [[task]]
            id = "bad"
            plugin = "shell"
            depends_on = ["ok"]
            command = "echo 'multi\\nline' >&2; exit 4"
            """ % {"w": d.work})
        d.start()
        rc, run, _ = d.ctl("run", "wf", "--wait")
        self.assertEqual(rc, 1)
        n, = self.wait_notification(d, run["id"])
        env = dict(line.split("=", 1) for line in d.read("env").splitlines() if "=" in line)
        self.assertEqual(env["TASKHUB_EVENT"], "failure")
        self.assertEqual(env["TASKHUB_RUN_ID"], run["id"])
        self.assertEqual(env["TASKHUB_NOTIFICATION_ID"], n["id"])
        self.assertEqual(env["TASKHUB_WORKFLOW"], "wf")
        self.assertEqual(env["TASKHUB_STATE"], "failed")
        self.assertEqual(env["TASKHUB_TRIGGER"], "manual")
        self.assertEqual(env["TASKHUB_FAILED_TASKS"], "bad")
        self.assertEqual(env["TASKHUB_FAILED_COUNT"], "1")
        self.assertEqual(env["TASKHUB_FAILED_TASK_1_ID"], "bad")
        self.assertIn("4", env["TASKHUB_FAILED_TASK_1_MESSAGE"])
        log = env["TASKHUB_FAILED_TASK_1_LOG"]
        self.assertTrue(os.path.isfile(log), log)
        with open(log) as f:
            self.assertIn("multi", f.read())
        self.assertIso(env["TASKHUB_STARTED"])
        self.assertIso(env["TASKHUB_ENDED"])
        float(env["TASKHUB_DURATION"])
        self.assertIn("PATH", env)
        doc = json.loads(d.read("stdin"))
        self.assertEqual(doc["run_id"], run["id"])
        self.assertEqual(doc["event"], "failure")
        self.assertEqual(doc["notification_id"], n["id"])
        self.assertEqual([t["id"] for t in doc["failed_tasks"]], ["bad"])
        self.assertEqual(doc["failed_tasks"][0]["log"], log)
        self.assertFalse(doc["sample"])

    @harness.unittest.skipUnless(os.geteuid() == 0, "needs root to run a notifier as another user")
    def test_command_runs_as_the_workflows_run_as(self):
        d = self.daemon(extra_config=FAST)
        out = os.path.join(d.dir, "drop")
        os.makedirs(out)
        os.chmod(out, 0o1777)
        os.chmod(d.dir, 0o755)
        d.write_workflow("wf", """\
            run_as = "nobody"

            [[notify]]
            command = "id -un > %s/who; echo $HOME $USER >> %s/who"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """ % (out, out))
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        self.wait_notification(d, run["id"])
        with open(os.path.join(out, "who")) as f:
            who = f.read().split("\n")
        self.assertEqual(who[0], "nobody")
        self.assertTrue(who[1].endswith(" nobody"), who)
        self.assertEqual(os.stat(os.path.join(out, "who")).st_uid, harness.pwd.getpwnam("nobody").pw_uid)

    def test_failure_success_recovery_over_a_sequence(self):
        # A workflow without [[notify]] uses taskhub.toml's; one with on = [] sends nothing.
        d = self.daemon(extra_config='\n[[notify]]\non = ["failure", "success", "recovery"]\n'
                                     'command = "echo $TASKHUB_EVENT $TASKHUB_WORKFLOW >> @WORKDIR@/events"\n'
                                     + FAST)
        with open(d.config) as f:
            cfg = f.read().replace("@WORKDIR@", d.work)
        with open(d.config, "w") as f:
            f.write(cfg)
        flaky = """\
            [params]
            fail = "1"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "test ${params.fail} = 0"
            """
        d.write_workflow("flaky", flaky)
        d.write_workflow("quiet", "[[notify]]\non = []\n" + textwrap.dedent(flaky))
        d.start()
        runs = []
        for fail in ("1", "1", "0", "0", "1"):
            for wf in ("flaky", "quiet"):
                _, run, _ = d.ctl("run", wf, "--param", "fail=" + fail, "--wait")
                runs.append(run)
                if wf == "flaky":
                    self.wait_notification(d, run["id"])
        expected = ["failure flaky", "failure flaky", "recovery flaky", "success flaky", "failure flaky"]
        harness.wait_until(lambda: os.path.exists(d.path("events")) and len(d.read("events").splitlines()) >= 5,
                           what="five events")
        self.assertEqual(d.read("events").splitlines(), expected)
        for run in runs:
            if run["workflow"] == "quiet":
                self.assertEqual(self.notifications(d, run["id"]), [])

    def test_failing_command_is_retried_then_delivered(self):
        d = self.daemon(extra_config=FAST)
        d.write_workflow("wf", """\
            [[notify]]
            command = "n=$(cat %(w)s/n 2>/dev/null || echo 0); echo $((n+1)) > %(w)s/n; [ $n -ge 2 ] || { echo busy; exit 3; }"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """ % {"w": d.work})
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        n, = self.wait_notification(d, run["id"])
        self.assertEqual(n["attempts"], 3)
        self.assertEqual(d.read("n").strip(), "3")
        self.assertIn("NOTIFY_FAILED failure command:", d.log())
        self.assertIn("exit 3: busy", d.log())
        st = d.ctl_ok("status")["notifications"]
        self.assertEqual(st["failed_attempts"], 2)
        self.assertEqual(st["pending"], 0)
        self.assertIn("exit 3: busy", st["last_error"])

    def test_command_that_always_fails_gives_up(self):
        d = self.daemon(extra_config=FAST + "retries = 1\n")
        d.write_workflow("wf", """\
            [[notify]]
            command = "exit 9"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """)
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        n, = self.wait_notification(d, run["id"], state="failed")
        self.assertEqual(n["attempts"], 2)
        self.assertEqual(n["last_error"], "exit 9")
        self.assertIn("NOTIFY_GAVE_UP failure command: exit 9 for %s" % run["id"], d.log())
        self.assertEqual(d.ctl_ok("status")["notifications"]["failed"], 1)
        text = d.ctl_ok("show", run["id"], json=False)
        self.assertIn("NOTIFICATIONS", text)
        self.assertIn("command: exit 9", text)

    def test_retried_run_that_fails_again_notifies_again(self):
        d = self.daemon(extra_config=FAST)
        d.write_workflow("wf", """\
            [[notify]]
            command = "echo $TASKHUB_NOTIFICATION_ID >> %s/ids"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """ % d.work)
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        self.wait_notification(d, run["id"])
        d.ctl_ok("retry", run["id"])
        d.ctl("wait", run["id"])
        notes = self.wait_notification(d, run["id"], count=2)
        self.assertEqual([n["event"] for n in notes], ["failure", "failure"])
        self.assertNotEqual(notes[0]["id"], notes[1]["id"])
        self.assertEqual(d.read("ids").split(), [n["id"] for n in notes])

    def test_hanging_notifier_does_not_block_runs(self):
        marker = harness.new_marker()
        d = self.daemon(extra_config=FAST.replace('"10s"', '"120s"'))
        d.write_workflow("wf", """\
            [[notify]]
            on = ["failure", "success"]
            command = "sleep 600 # %s"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """ % marker)
        d.start()
        # More runs than there are delivery threads: each run's notifier hangs, runs go on.
        for _ in range(8):
            rc, run, _ = d.ctl("run", "wf", "--wait")
            self.assertEqual((rc, run["state"]), (0, "succeeded"))
        harness.wait_until(lambda: len(harness.processes_with_marker(marker)) >= 4, what="hanging notifiers")
        st = d.ctl_ok("status")["notifications"]
        self.assertEqual(st["pending"], 8)
        for pid in harness.processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)

    def test_notification_due_at_kill9_is_delivered_once_after_restart(self):
        marker = harness.new_marker()
        d = self.daemon(extra_config=FAST)
        d.write_workflow("wf", """\
            [[notify]]
            command = "touch %(w)s/started; while [ ! -e %(w)s/go ]; do sleep 0.05; done; echo $TASKHUB_NOTIFICATION_ID >> %(w)s/delivered # %(m)s"

            [[task]]
            id = "bad"
            plugin = "shell"
            command = "exit 1"
            """ % {"w": d.work, "m": marker})
        d.start()
        _, run, _ = d.ctl("run", "wf", "--wait")
        harness.wait_until(lambda: os.path.exists(d.path("started")), what="the notifier to start")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(harness.TIMEOUT)
        for pid in harness.processes_with_marker(marker):
            os.kill(pid, signal.SIGKILL)
        harness.wait_until(lambda: not harness.processes_with_marker(marker), what="the notifier to die")
        self.assertFalse(os.path.exists(d.path("delivered")))
        with open(d.path("go"), "w"):
            pass
        d.start()
        n, = self.wait_notification(d, run["id"])
        self.assertEqual(d.read("delivered").splitlines(), [n["id"]])
        self.assertIn("NOTIFY_RESUMED 1 pending notification(s)", d.log())
        d.stop()
        d.start()
        harness.wait_until(lambda: d.ctl_ok("status")["notifications"]["sent"] == 1, what="the sent count")
        self.assertEqual(d.read("delivered").splitlines(), [n["id"]], "delivered exactly once")
        self.assertEqual(self.notifications(d, run["id"])[0]["state"], "sent")

    # ---- notify test ----

    def test_notify_test_sends_a_sample_to_each_target(self):
        d = self.daemon(extra_config=FAST)
        sendmail = self.fake_sendmail(d)
        with open(d.config, "a") as f:
            f.write('sendmail = "%s"\n' % sendmail)
        d.write_workflow("wf", """\
            [[notify]]
            command = "env > %(w)s/sample.env"
            [[notify]]
            mail = "ops@example.org"
            [[notify]]
            command = "echo no route; exit 2"

            [[task]]
            id = "t"
            plugin = "shell"
            command = "true"
            """ % {"w": d.work})
        d.start()
        rc, out, err = d.ctl("notify", "test", "wf", json=False)
        self.assertEqual(rc, 1, "one target failed: %s %s" % (out, err))
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        self.assertTrue(lines[0].startswith("ok     command: env >"), lines[0])
        self.assertTrue(lines[1].startswith("ok     mail: ops@example.org"), lines[1])
        self.assertTrue(lines[2].startswith("error  command: echo no route; exit 2 (exit 2: no route)"), lines[2])
        env = dict(line.split("=", 1) for line in d.read("sample.env").splitlines() if "=" in line)
        self.assertEqual(env["TASKHUB_EVENT"], "test")
        self.assertEqual(env["TASKHUB_SAMPLE"], "1")
        self.assertTrue(env["TASKHUB_RUN_ID"].startswith("wf@test-"), env["TASKHUB_RUN_ID"])
        (msg, _, _), = self.mails(d)
        self.assertIn("SAMPLE", msg["Subject"])
        rc, out, err = d.ctl("notify", "test", "nosuch", json=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("nosuch", err)
        # Sending is for admins: a reader (here user nobody, let onto the socket) is refused.
        if os.geteuid() == 0 and os.stat(harness.BIN["ctl"]).st_mode & stat.S_IXOTH:
            os.unlink(d.path("sample.env"))
            os.chmod(d.dir, 0o755)
            os.chmod(d.socket, 0o666)
            rc, out, err = d.ctl("notify", "test", "wf", json=False, preexec_fn=harness.demote_to_nobody)
            self.assertEqual(rc, 1, out + err)
            self.assertIn("may only use read-only commands", err)
            self.assertFalse(os.path.exists(d.path("sample.env")), "nobody made taskhubd send a sample")


if __name__ == "__main__":
    harness.main()
