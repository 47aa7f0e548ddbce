"""The plugin SDK as a stranger uses it: `cmake --install` of this build tree into a staging
directory, examples/plugin-c and examples/plugin-cpp configured and built as separate CMake projects
against it (find_package(TaskHub)), the C example once more with plain cc and pkg-config, each
plugin through `taskhubctl plugin check`, then a real taskhubd whose plugin_dirs hold the freshly
built plugins runs a workflow through each of them.

CTest sets, besides the harness's variables:
    TASKHUB_BUILD_DIR      this build tree (what gets installed)
    TASKHUB_SOURCE_DIR     the source tree (examples/)
    TASKHUB_CMAKE          the cmake that configured it
    TASKHUB_INSTALL_LIBDIR CMAKE_INSTALL_LIBDIR of the build ("lib", "lib/x86_64-linux-gnu", ...)
    TASKHUB_PREFIX         CMAKE_INSTALL_PREFIX of the build

The install goes to DESTDIR=<tmp>/root with the configured prefix (another one is refused:
test_cmake_install.py), so the SDK is used from where it was not installed for: DESTDIR keeps the
files at absolute paths (its sysconfdir) inside the temp dir as well."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BUILD = os.environ.get("TASKHUB_BUILD_DIR", "")
SOURCE = os.environ.get("TASKHUB_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CMAKE = os.environ.get("TASKHUB_CMAKE") or "cmake"
LIBDIR = os.environ.get("TASKHUB_INSTALL_LIBDIR") or "lib"
PREFIX = (os.environ.get("TASKHUB_PREFIX") or "/usr/local").rstrip("/")
BUILD_TIMEOUT = 240


def run(argv, env=None, cwd=None, ok=True):
    """Runs a build step; fails the test with its output when it exits non-zero (and ok)."""
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=BUILD_TIMEOUT)
    if ok and p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


class SdkExamplesTest(harness.DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")):
            raise RuntimeError("TASKHUB_BUILD_DIR must name the build tree to install, found %r" % BUILD)
        cls.tmp = tempfile.mkdtemp(prefix="th-sdk-", dir="/tmp")
        cls.root = os.path.join(cls.tmp, "root")
        cls.staged = cls.root + PREFIX  # where the SDK is now
        env = dict(os.environ, DESTDIR=cls.root)
        run([CMAKE, "--install", BUILD], env=env)
        # Each example: configured against the staged SDK, built, and installed with the INSTALL
        # option of taskhub_add_plugin() into a plugin directory of its own.
        cls.plugin_dirs = {}
        for example, target in (("plugin-c", "greet"), ("plugin-cpp", "echo")):
            build = os.path.join(cls.tmp, "build-" + example)
            dest = os.path.join(cls.tmp, "plugins-" + example)
            run([CMAKE, "-S", os.path.join(SOURCE, "examples", example), "-B", build,
                 "-DCMAKE_PREFIX_PATH=" + cls.staged, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                 "-DCMAKE_INSTALL_PREFIX=" + dest, "-DCMAKE_INSTALL_LIBDIR=lib"])
            run([CMAKE, "--build", build])
            run([CMAKE, "--install", build])
            cls.plugin_dirs[target] = os.path.join(dest, "lib", "taskhub", "plugins")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def pkg_config(self, *args):
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.staged, LIBDIR, "pkgconfig"),
                   PKG_CONFIG_SYSROOT_DIR=self.root)
        return run(["pkg-config"] + list(args) + ["taskhub-plugin"], env=env).stdout.strip()

    def plugin_check(self, path, *args):
        p = subprocess.run([harness.BIN["ctl"], "--json", "plugin", "check", path] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=harness.TIMEOUT)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        return p.returncode, json.loads(p.stdout)

    def test_installed_sdk(self):
        for header in ("plugin_api.h", "plugin.hpp", "suggest.hpp"):
            self.assertTrue(os.path.isfile(os.path.join(self.staged, "include", "taskhub", header)), header)
        examples = os.path.join(self.staged, "share", "doc", "taskhub", "examples")
        self.assertEqual(sorted(os.listdir(os.path.join(examples, "plugin-c"))), ["CMakeLists.txt", "greet.c"])
        self.assertEqual(sorted(os.listdir(os.path.join(examples, "plugin-cpp"))), ["CMakeLists.txt", "echo.cc"])
        package = os.path.join(self.staged, LIBDIR, "cmake", "TaskHub")
        self.assertEqual(sorted(f for f in os.listdir(package) if f.startswith("TaskHubConfig")),
                         ["TaskHubConfig.cmake", "TaskHubConfigVersion.cmake"])
        # The .pc file names where it was found, not the prefix it was installed for.
        self.assertEqual(self.pkg_config("--variable=prefix"), self.root + PREFIX)
        self.assertEqual(self.pkg_config("--variable=plugindir"),
                         self.root + PREFIX + "/" + LIBDIR + "/taskhub/plugins")
        self.assertEqual(self.pkg_config("--cflags"), "-I" + self.root + PREFIX + "/include")
        self.assertEqual(self.pkg_config("--variable=abi_version"), "1.7")
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.staged, LIBDIR, "pkgconfig"))
        self.assertEqual(run(["pkg-config", "--variable=plugindir", "taskhub-plugin"], env=env).stdout.strip(),
                         PREFIX + "/" + LIBDIR + "/taskhub/plugins")

    def test_package_version_is_same_major(self):
        # SameMajorVersion: 0.1 is found, 1.0 is not.
        for wanted, found in (("0.1", True), ("1.0", False)):
            src = os.path.join(self.tmp, "version-" + wanted)
            os.makedirs(src)
            with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
                f.write("cmake_minimum_required(VERSION 3.16)\nproject(v NONE)\n"
                        "find_package(TaskHub %s REQUIRED)\nmessage(STATUS \"abi ${TASKHUB_ABI_VERSION}\")\n" % wanted)
            p = run([CMAKE, "-S", src, "-B", os.path.join(src, "build"), "-DCMAKE_PREFIX_PATH=" + self.staged],
                    ok=False)
            self.assertEqual(p.returncode == 0, found, p.stdout + p.stderr)
            if found:
                self.assertIn("abi 1.7", p.stdout)
            else:
                self.assertIn('compatible with requested version "1.0"', p.stdout + p.stderr)

    def test_examples_pass_plugin_check(self):
        greet = os.path.join(self.plugin_dirs["greet"], "greet.so")
        echo = os.path.join(self.plugin_dirs["echo"], "echo.so")
        rc, r = self.plugin_check(greet, "--params", '{"name": "check"}', "--config-json", '{"greeting": "Hi"}')
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["plugin"]["capabilities"], ["cancel", "health_check"])
        self.assertEqual(r["execute"]["log"], "Hi, check! (task check, attempt 1)\n")
        rc, r = self.plugin_check(echo, "--params", '{"text": "hey", "repeat": 2}')
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["plugin"]["capabilities"], ["cancel", "health_check", "blocking_execute"])
        self.assertEqual(r["execute"]["log"], "hey\nhey\n")
        self.assertEqual(r["execute"]["outputs"], {"lines": "2"})
        self.assertTrue(r["steps"][-1]["detail"].startswith("healthy: 0 echo(es) running on schedule"), r)

        # Cancelled at the timeout: a waiting timer (greet) and a sleeping worker (echo) both stop.
        rc, r = self.plugin_check(greet, "--params", '{"name": "x", "delay_ms": 60000}', "--timeout", "200ms")
        self.assertEqual(rc, 1)
        self.assertEqual((r["execute"]["outcome"], r["execute"]["message"]),
                         ("cancelled", "cancelled before the greeting"))
        rc, r = self.plugin_check(echo, "--params", '{"text": "x", "repeat": 50, "interval_ms": 1000}',
                                  "--timeout", "300ms")
        self.assertEqual(rc, 1)
        self.assertEqual((r["execute"]["outcome"], r["execute"]["message"]),
                         ("cancelled", "cancelled after 1 of 50 lines"))
        self.assertLess(r["execute"]["duration_ms"], 3000)

        # Precise messages: a misspelt parameter, a setting the plugin does not know.
        rc, r = self.plugin_check(greet, "--params", '{"nmae": "x"}')
        self.assertEqual(rc, 1)
        self.assertEqual(r["steps"][2]["detail"],
                         "plugin greet rejects parameter 'nmae': unknown parameter 'nmae' (accepted: name, delay_ms)")
        rc, r = self.plugin_check(echo, "--params", '{"txt": "x"}')
        self.assertEqual(r["steps"][2]["detail"],
                         "plugin echo rejects parameter 'txt': unknown parameter 'txt' (accepted: text, repeat, "
                         "interval_ms); did you mean 'text'?")
        rc, r = self.plugin_check(echo, "--params", '{"text": "x", "repeat": 0}')
        self.assertEqual(r["steps"][2]["detail"],
                         "plugin echo rejects parameter 'repeat': 'repeat' must be from 1 to 100, found 0")
        rc, r = self.plugin_check(greet, "--config-json", '{"greting": "x"}')
        self.assertEqual(rc, 1)
        self.assertEqual(r["steps"][1]["detail"],
                         "create() failed: unknown setting 'plugins.greet.greting' (accepted: greeting)")

    def test_plugin_built_with_pkg_config(self):
        # What the guide shows for a build without CMake.
        cflags = self.pkg_config("--cflags").split()
        jansson = run(["pkg-config", "--cflags", "--libs", "jansson"]).stdout.split()
        out = os.path.join(self.tmp, "greet-pkg-config.so")
        run(["cc", "-std=c99", "-shared", "-fPIC", "-fvisibility=hidden", "-Wl,--no-undefined"] + cflags +
            ["-o", out, os.path.join(SOURCE, "examples", "plugin-c", "greet.c")] + jansson + ["-pthread"])
        rc, r = self.plugin_check(out, "--params", '{"name": "pkg-config"}')
        self.assertEqual(rc, 0, r)
        self.assertEqual(r["execute"]["log"], "Hello, pkg-config! (task check, attempt 1)\n")

    def test_daemon_runs_workflows_through_the_examples(self):
        d = self.daemon(extra_plugin_dirs=[self.plugin_dirs["greet"], self.plugin_dirs["echo"]],
                        extra_config=textwrap.dedent("""\

                            [plugins.greet]
                            greeting = "Howdy"

                            [plugins.echo]
                            max_repeat = 5
                            """))
        d.write_workflow("greetings", """\
            [[task]]
            id = "now"
            plugin = "greet"
            name = "SDK"

            [[task]]
            id = "later"
            plugin = "greet"
            depends_on = ["now"]
            name = "again"
            delay_ms = 100
            """)
        d.write_workflow("echoes", """\
            [[task]]
            id = "say"
            plugin = "echo"
            text = "echo from the SDK example"
            repeat = 3
            interval_ms = 20

            [[task]]
            id = "count"
            plugin = "shell"
            depends_on = ["say"]
            command = "echo said ${tasks.say.outputs.lines} lines"
            """)
        d.write_workflow("slow", """\
            [[task]]
            id = "wait"
            plugin = "greet"
            name = "nobody"
            delay_ms = 600000
            """)
        d.start()

        rc, run_, err = d.ctl("run", "greetings", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run_["state"], "succeeded", run_)
        self.assertEqual(d.ctl_ok("logs", run_["id"], "now", json=False), "Howdy, SDK! (task now, attempt 1)\n")
        self.assertEqual(d.ctl_ok("logs", run_["id"], "later", json=False), "Howdy, again! (task later, attempt 1)\n")
        self.assertEqual(harness.task(run_, "later")["message"], "greeted after a delay")

        rc, run_, err = d.ctl("run", "echoes", "--wait")
        self.assertEqual(rc, 0, err)
        self.assertEqual(run_["state"], "succeeded", run_)
        self.assertEqual(d.ctl_ok("logs", run_["id"], "say", json=False), "echo from the SDK example\n" * 3)
        self.assertEqual(d.ctl_ok("logs", run_["id"], "count", json=False), "said 3 lines\n")

        # cancel() through the daemon: the greeting waits ten minutes, but ends at once when its
        # run is cancelled (without TH_CAP_CANCEL the daemon would have to wait for it).
        run_ = d.ctl_ok("run", "slow")
        d.wait_task_state(run_["id"], "wait", "running")
        t0 = time.monotonic()
        d.ctl_ok("cancel", run_["id"])
        final = d.wait_run_state(run_["id"], "cancelled", timeout=10)
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertEqual(harness.task(final, "wait")["state"], "cancelled")
        self.assertNotIn("PLUGIN_CANNOT_CANCEL", d.log())

        # The plugins' validation messages, as `taskhubctl validate` shows them with this config.
        bad = os.path.join(d.dir, "bad.toml")
        with open(bad, "w") as f:
            f.write('[[task]]\nid = "t"\nplugin = "echo"\ntext = "x"\nrepeat = 9\n')
        p = subprocess.run([harness.BIN["ctl"], "--config", d.config, "validate", bad], capture_output=True,
                           text=True, timeout=harness.TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout.strip(), "%s:5: task 't': plugin echo rejects parameter 'repeat': "
                                           "'repeat' must be from 1 to 5, found 9" % bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
