// [[notify]] in workflow files and taskhub.toml, and [notifications].
#include <catch2/catch.hpp>

#include "config_support.h"

namespace taskhub::config {
namespace {

using testing::loadConfig;
using testing::loadText;
using testing::messages;
using testing::TempDir;
using model::NotifyEvent;
using model::NotifyKind;

const std::string kTask = "\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n";

std::string joined(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += s + "\n";
    return out;
}

TEST_CASE("[[notify]] targets load with their events, defaulting to failure, lost and deadline_missed") {
    TempDir dir;
    auto load = loadText(dir, "wf.toml",
                         "[[notify]]\nmail = \"ops@example.org, root\"\n"
                         "[[notify]]\non = [\"success\", \"recovery\"]\ncommand = \"/usr/local/bin/page\"\n"
                         "[[notify]]\non = [\"failure\"]\nwebhook = \"https://hooks.example.org/x?y=1\"\n" + kTask);
    INFO(joined(messages(load)));
    REQUIRE(load.workflow);
    const auto& n = load.workflow->notify;
    REQUIRE(load.workflow->notify_set);
    REQUIRE(n.size() == 3);
    CHECK(n[0].kind == NotifyKind::Mail);
    CHECK(n[0].mail_to == std::vector<std::string>{"ops@example.org", "root"});
    CHECK(n[0].on == std::vector<NotifyEvent>{NotifyEvent::Failure, NotifyEvent::Lost, NotifyEvent::DeadlineMissed});
    CHECK(n[1].kind == NotifyKind::Command);
    CHECK(n[1].wants(NotifyEvent::Recovery));
    CHECK_FALSE(n[1].wants(NotifyEvent::Failure));
    CHECK(n[2].describe() == "webhook: https://hooks.example.org/x?y=1");
    CHECK(n[0].line == 1);
}

TEST_CASE("a workflow without [[notify]] leaves the daemon's default in force; on = [] alone turns it off") {
    TempDir dir;
    auto plain = loadText(dir, "plain.toml", kTask);
    REQUIRE(plain.workflow);
    CHECK_FALSE(plain.workflow->notify_set);
    auto off = loadText(dir, "off.toml", "[[notify]]\non = []\n" + kTask);
    INFO(joined(messages(off)));
    REQUIRE(off.workflow);
    CHECK(off.workflow->notify_set);
    CHECK(off.workflow->notify.empty());
}

TEST_CASE("[[notify]] mistakes are refused naming the line, the key and what is allowed") {
    TempDir dir;
    auto problem = [&](const std::string& notify) {
        auto load = loadText(dir, "bad.toml", notify + kTask);
        REQUIRE_FALSE(load.workflow);
        return joined(messages(load));
    };
    CHECK_THAT(problem("[[notify]]\non = [\"failed\"]\nmail = \"root\"\n"),
               Catch::Contains("2: [[notify]] #1 'on': unknown event \"failed\"") &&
                   Catch::Contains("failure, success, recovery, deadline_missed, lost"));
    CHECK_THAT(problem("[[notify]]\non = [\"test\"]\nmail = \"root\"\n"), Catch::Contains("unknown event \"test\""));
    CHECK_THAT(problem("[[notify]]\non = [\"failure\"]\n"), Catch::Contains("has no target: give exactly one of"));
    CHECK_THAT(problem("[[notify]]\nmail = \"root\"\ncommand = \"true\"\n"), Catch::Contains("has 2 targets"));
    CHECK_THAT(problem("[[notify]]\nmial = \"root\"\n"),
               Catch::Contains("unknown key 'mial' in [[notify]] #1; did you mean 'mail'?"));
    CHECK_THAT(problem("[[notify]]\nmail = \"ops@example.org\\r\\nBcc: victim@example.org\"\n"),
               Catch::Contains("contains a character mail addresses here may not"));
    CHECK_THAT(problem("[[notify]]\nmail = \"Ops <ops@example.org>\"\n"), Catch::Contains("display names"));
    CHECK_THAT(problem("[[notify]]\nmail = \"a@x.org,,b@x.org\"\n"), Catch::Contains("an address is empty"));
    CHECK_THAT(problem("[[notify]]\nwebhook = \"ftp://x.org/\"\n"), Catch::Contains("must start with https:// or http://"));
    CHECK_THAT(problem("[[notify]]\nwebhook = \"https:///path\"\n"), Catch::Contains("has no host"));
    CHECK_THAT(problem("[[notify]]\ncommand = \"\"\n"), Catch::Contains("must be a shell command of 1 to 4096 bytes"));
    CHECK_THAT(problem("[[notify]]\non = []\nmail = \"root\"\n"), Catch::Contains("it would never send"));
    CHECK_THAT(problem("[[notify]]\non = []\n[[notify]]\nmail = \"root\"\n"),
               Catch::Contains("turns notifications off, but other [[notify]] tables send"));
    CHECK_THAT(problem("notify = \"root\"\n"), Catch::Contains("'notify' must be an array of tables ([[notify]])"));
}

TEST_CASE("taskhub.toml: [[notify]] is the default, [notifications] the delivery settings") {
    TempDir dir;
    auto cfg = loadConfig(dir.write("taskhub.toml", "[[notify]]\nmail = \"root\"\n"
                                                    "[notifications]\nsendmail = \"/opt/bin/sendmail\"\n"
                                                    "mail_from = \"taskhub@example.org\"\ntimeout = \"5s\"\n"
                                                    "retries = 2\nretry_delay = \"1s\"\nmax_pending = 10\n"
                                                    "log_lines = 5\n"));
    REQUIRE(cfg.notify.size() == 1);
    CHECK(cfg.notify[0].mail_to == std::vector<std::string>{"root"});
    const auto& n = cfg.notifications;
    CHECK(n.sendmail == "/opt/bin/sendmail");
    CHECK(n.mail_from == "taskhub@example.org");
    CHECK(n.timeout == std::chrono::seconds(5));
    CHECK(n.retries == 2);
    CHECK(n.retry_delay == std::chrono::seconds(1));
    CHECK(n.max_pending == 10);
    CHECK(n.log_lines == 5);

    auto defaults = loadConfig(dir.write("plain.toml", ""));
    CHECK(defaults.notify.empty());
    CHECK(defaults.notifications.sendmail == "/usr/sbin/sendmail");
    CHECK(defaults.notifications.mail_from.rfind("taskhub", 0) == 0);
    CHECK(defaults.notifications.retries == 5);
    CHECK(defaults.notifications.timeout == std::chrono::seconds(30));

    auto refused = testing::configRefusal(dir.write("bad.toml", "[notifications]\nsendmail = \"sendmail\"\nretries = -1\n"
                                                                "mail_from = \"a b\"\nqueue = 3\n"));
    const std::string all = joined(messages(refused));
    CHECK_THAT(all, Catch::Contains("'notifications.sendmail' must be an absolute path"));
    CHECK_THAT(all, Catch::Contains("'notifications.retries'"));
    CHECK_THAT(all, Catch::Contains("'notifications.mail_from'"));
    CHECK_THAT(all, Catch::Contains("unknown key 'queue' in [notifications]"));
}

} // namespace
} // namespace taskhub::config
