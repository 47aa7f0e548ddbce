// What notifications say: the facts JSON, a command's environment, mails (headers, bounds,
// injection) and mbox entries.
#include <catch2/catch.hpp>

#include "notify/message.h"

namespace taskhub::notify {
namespace {

using model::NotifyEvent;

Facts failedRun() {
    Facts f;
    f.notification_id = notificationId("nightly-backup@20261206T023000Z", NotifyEvent::Failure, "mail: root");
    f.event = NotifyEvent::Failure;
    f.run_id = "nightly-backup@20261206T023000Z";
    f.workflow = "nightly-backup";
    f.state = "failed";
    f.trigger = "cron";
    f.message = "task dump failed: exit status 2";
    f.scheduled_ms = 1'796'524'200'000;
    f.started_ms = 1'796'524'200'100;
    f.ended_ms = 1'796'524'261'600;
    f.failed_count = 1;
    f.failed.push_back({"dump", "exit status 2", "/var/lib/taskhub/logs/r/dump.1.log"});
    return f;
}

// The header block of a mail: everything before the first empty line.
std::string headers(const std::string& mail) { return mail.substr(0, mail.find("\n\n") + 1); }

std::vector<std::string> headerLines(const std::string& mail) {
    std::vector<std::string> out;
    const std::string h = headers(mail);
    size_t pos = 0;
    while (pos < h.size()) {
        size_t nl = h.find('\n', pos);
        out.push_back(h.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return out;
}

TEST_CASE("notification ids are stable per (run, event, target) and differ between targets") {
    CHECK(notificationId("r", NotifyEvent::Failure, "mail: a") == notificationId("r", NotifyEvent::Failure, "mail: a"));
    CHECK(notificationId("r", NotifyEvent::Failure, "mail: a") != notificationId("r", NotifyEvent::Failure, "mail: b"));
    CHECK(notificationId("r", NotifyEvent::Failure, "mail: a") != notificationId("r", NotifyEvent::Success, "mail: a"));
    CHECK_THAT(notificationId("r", NotifyEvent::Failure, "mail: a"), Catch::StartsWith("r/failure/"));
}

TEST_CASE("the facts survive the JSON document and hostile text stays bounded and valid UTF-8") {
    Facts f = failedRun();
    f.failed[0].message = std::string(100'000, 'x') + "\xff\xfe";
    Facts back;
    std::string err;
    REQUIRE(parseFacts(factsJson(f), &back, &err));
    CHECK(back.run_id == f.run_id);
    CHECK(back.event == NotifyEvent::Failure);
    CHECK(back.scheduled_ms == f.scheduled_ms);
    CHECK(back.ended_ms == f.ended_ms);
    CHECK(back.failed.size() == 1);
    CHECK(back.failed[0].message.size() <= kMaxMessageBytes);
    CHECK(back.failed[0].log == f.failed[0].log);
    CHECK_FALSE(parseFacts("[1]", &back, &err));
}

TEST_CASE("a command's environment carries the facts, one line each, and nothing of taskhubd's own") {
    Facts f = failedRun();
    f.failed[0].message = "line one\nline two\r\nTASKHUB_EVENT=success";
    auto env = commandEnvironment(f);
    auto value = [&](const std::string& name) -> std::optional<std::string> {
        for (const auto& e : env) {
            if (e.rfind(name + "=", 0) == 0) return e.substr(name.size() + 1);
        }
        return std::nullopt;
    };
    CHECK(value("TASKHUB_EVENT") == "failure");
    CHECK(value("TASKHUB_RUN_ID") == f.run_id);
    CHECK(value("TASKHUB_WORKFLOW") == "nightly-backup");
    CHECK(value("TASKHUB_STATE") == "failed");
    CHECK(value("TASKHUB_TRIGGER") == "cron");
    CHECK(value("TASKHUB_SCHEDULED") == "2026-12-06T02:30:00.000Z");
    CHECK(value("TASKHUB_DURATION") == "61.500");
    CHECK(value("TASKHUB_FAILED_TASKS") == "dump");
    CHECK(value("TASKHUB_FAILED_TASK_1_LOG") == "/var/lib/taskhub/logs/r/dump.1.log");
    CHECK(value("TASKHUB_FAILED_TASK_1_MESSAGE") == "line one line two  TASKHUB_EVENT=success");
    CHECK(value("TASKHUB_NOTIFICATION_ID") == f.notification_id);
    CHECK(value("PATH"));
    CHECK_FALSE(value("TASKHUB_SAMPLE"));
    for (const auto& e : env) CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("a mail names workflow, run and failed task, with the last lines of its log") {
    MailOptions o;
    o.from = "taskhub@host.example";
    o.to = {"ops@example.org", "root"};
    o.log_lines = 3;
    o.now_ms = 1'796'524'300'000;
    o.hostname = "host.example";
    std::string asked_path;
    auto mail = composeMail(failedRun(), o, [&](const std::string& path, size_t) -> std::optional<std::string> {
        asked_path = path;
        return std::string("l1\nl2\nl3\nl4\nl5\n");
    });
    CHECK(asked_path == "/var/lib/taskhub/logs/r/dump.1.log");
    const auto h = headers(mail);
    CHECK_THAT(h, Catch::Contains("From: taskhub@host.example\n"));
    CHECK_THAT(h, Catch::Contains("To: ops@example.org, root\n"));
    CHECK_THAT(h, Catch::Contains("Subject: [taskhub] nightly-backup failed: run nightly-backup@20261206T023000Z\n"));
    CHECK_THAT(h, Catch::Contains("Date: Sun, 06 Dec 2026 02:31:40 +0000\n"));
    CHECK_THAT(h, Catch::Contains("Message-ID: <nightly-backup.20261206T023000Z.failure."));
    CHECK_THAT(h, Catch::Contains("Content-Type: text/plain; charset=UTF-8\n"));
    CHECK_THAT(h, Catch::Contains("X-TaskHub-Notification-Id: " + failedRun().notification_id + "\n"));
    const auto body = mail.substr(h.size());
    CHECK_THAT(body, Catch::Contains("--- task dump: exit status 2"));
    CHECK_THAT(body, Catch::Contains("l3\nl4\nl5\n"));
    CHECK_THAT(body, !Catch::Contains("l2\n"));
}

TEST_CASE("hostile task output never reaches a mail's headers, and a huge log is cut with a note") {
    Facts f = failedRun();
    f.message = "boom\r\nBcc: victim@example.org\r\n\r\nfake body";
    f.failed[0].message = "x\nSubject: pwned";
    f.workflow = "wf\r\nX-Injected: 1";
    MailOptions o;
    o.from = "taskhub";
    o.to = {"root"};
    o.log_lines = 100000;
    o.now_ms = 0;
    auto mail = composeMail(f, o, [](const std::string&, size_t max) -> std::optional<std::string> {
        std::string big;
        for (int i = 0; big.size() < 4 * max; ++i) big += "From line " + std::to_string(i) + "\r\nBcc: x@y\n";
        return big;
    });
    for (const auto& line : headerLines(mail)) {
        CHECK_FALSE(line.rfind("Bcc:", 0) == 0);
        CHECK_FALSE(line.rfind("X-Injected:", 0) == 0);
        CHECK(line.find('\r') == std::string::npos);
    }
    CHECK_THAT(headers(mail), Catch::Contains("Subject: [taskhub] wf  X-Injected: 1 failed"));
    CHECK(mail.size() - headers(mail).size() <= kMaxMailBodyBytes + 1);
}

TEST_CASE("the body of a mail is bounded and says where it was cut") {
    Facts f = failedRun();
    f.failed.clear();
    for (int i = 0; i < 20; ++i) f.failed.push_back({"t" + std::to_string(i), std::string(4000, 'm'), "/log"});
    f.failed_count = 500;
    MailOptions o;
    o.from = "taskhub";
    o.to = {"root"};
    o.log_lines = 1000;
    auto mail = composeMail(f, o, [](const std::string&, size_t max) { return std::optional<std::string>(std::string(max, 'z') + "\n"); });
    const auto body = mail.substr(headers(mail).size());
    CHECK(body.size() <= kMaxMailBodyBytes + 1);
    CHECK_THAT(body, Catch::Contains("the mail is cut here"));
    CHECK_THAT(body, Catch::Contains("Failed tasks: 500 (the first 20 below)"));
}

TEST_CASE("header text: control characters become spaces, non-ASCII is RFC 2047 encoded") {
    CHECK(headerText("a\r\nb") == "a  b");
    CHECK(headerText("Grüße") == "=?UTF-8?B?R3LDvMOfZQ==?=");
    const auto long_text = headerText(std::string(60, 'a') + "é" + "\r\nBcc: x");
    CHECK(long_text.find("\r\n ") != std::string::npos); // folded between encoded words
    CHECK(long_text.find("\r\nB") == std::string::npos);
}

TEST_CASE("mbox entries quote From lines and end with a blank line") {
    auto e = mboxEntry("taskhub", 0, "Subject: x\n\nFrom here\n>From there\nok");
    CHECK_THAT(e, Catch::StartsWith("From taskhub Thu Jan  1 00:00:00 1970\n"));
    CHECK_THAT(e, Catch::Contains("\n>From here\n>>From there\nok\n\n"));
}

TEST_CASE("a sample says so in its subject, body and environment") {
    Facts f = failedRun();
    f.sample = true;
    f.event = NotifyEvent::Test;
    CHECK_THAT(mailSubject(f), Catch::Contains("SAMPLE"));
    MailOptions o;
    o.from = "taskhub";
    o.to = {"root"};
    CHECK_THAT(composeMail(f, o, {}), Catch::Contains("This is a SAMPLE notification"));
    auto env = commandEnvironment(f);
    CHECK(std::find(env.begin(), env.end(), "TASKHUB_SAMPLE=1") != env.end());
}

} // namespace
} // namespace taskhub::notify
