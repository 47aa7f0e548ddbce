// taskhubctl's renderer: daemon text made safe for a terminal, table columns, times and states.
#include "render.h"
#include "term.h"

#include <catch2/catch.hpp>

#include <iostream>
#include <sstream>

#include <string>
#include <vector>

namespace {

namespace json = boost::json;
using namespace taskhub::ctl;

} // namespace

TEST_CASE("control characters of daemon text are shown as \\xNN") {
    CHECK(terminalSafe("plain text") == "plain text");
    CHECK(terminalSafe("a\x1b[2Jb") == "a\\x1b[2Jb");
    CHECK(terminalSafe("tab\there\nnext\r") == "tab\\x09here\\x0anext\\x0d");
    CHECK(terminalSafe(std::string("nul\0end", 7)) == "nul\\x00end");
    CHECK(terminalSafe("del\x7f") == "del\\x7f");
    // C1 controls in UTF-8 (U+0080..U+009F, e.g. CSI U+009B) are one \xNN each.
    CHECK(terminalSafe("csi\xc2\x9b" "2J") == "csi\\x9b2J");
    CHECK(terminalSafe("\xc2\x80\xc2\x9f") == "\\x80\\x9f");
    // Other UTF-8 is left alone: é, a no-break space (U+00A0), a lone 0xc2 at the end.
    CHECK(terminalSafe("caf\xc3\xa9 \xc2\xa0x\xc2") == "caf\xc3\xa9 \xc2\xa0x\xc2");
}

TEST_CASE("cells of JSON values") {
    json::value o = json::parse(R"({"s": "a\u001bb", "n": null, "i": 3, "b": true, "arr": ["x", "y\n"]})");
    CHECK(field(o, "s") == "a\\x1bb");
    CHECK(field(o, "n") == "-");
    CHECK(field(o, "i") == "3");
    CHECK(field(o, "b") == "true");
    CHECK(field(o, "missing") == "-");
    CHECK(field(json::value(3), "s") == "-");
    CHECK(joinStrings(o.at("arr")) == "x, y\\x0a");
    CHECK(joinStrings(json::array()) == "-");
    CHECK(arrayField(o, "s").empty());
    CHECK(arrayField(o, "arr").size() == 2);
    CHECK(paramsText(json::parse(R"({"params": {"who": "w\u0007", "n": 2}})")) == "who=w\\x07, n=2");
    CHECK(paramsText(json::parse(R"({"params": {}})")).empty());
}

TEST_CASE("table columns are as wide as their widest cell, two spaces apart") {
    CHECK(tableLines({"A", "BBB", "C"}, {{"xxxx", "y", "z"}, {"", "yyyyy", ""}}) == std::vector<std::string>{
                                                                                        "A     BBB    C",
                                                                                        "xxxx  y      z",
                                                                                        "      yyyyy",
                                                                                    });
    CHECK(tableLines({"ONLY"}, {}) == std::vector<std::string>{"ONLY"});
    // Escaped text is measured as shown.
    const std::string cell = terminalSafe("a\x1b");
    CHECK(tableLines({"X", "Y"}, {{cell, "1"}}) == std::vector<std::string>{"X      Y", "a\\x1b  1"});
}

TEST_CASE("times and durations") {
    CHECK(shortTime("2026-11-22T10:23:17.123Z") == "2026-11-22 10:23:17 +00:00"); // the display zone: UTC unless set
    CHECK(shortTime("-") == "-");
    CHECK(isoToMs("2026-11-22T10:23:17.123Z") == 1795342997123);
    CHECK(isoToMs("-") == -1);
    CHECK(isoToMs("2026-11-22") == -1);
    CHECK(formatMs(950) == "950ms");
    CHECK(formatMs(4'100) == "4.1s");
    CHECK(formatMs(187'000) == "3m07s");
    CHECK(formatMs(7'500'000) == "2h05m");
    CHECK(duration(json::parse(R"({"started": "2026-11-22T10:00:00.000Z", "ended": "2026-11-22T10:00:01.500Z"})")) ==
          "1.5s");
    CHECK(duration(json::parse(R"({"started": "2026-11-22T10:00:00.000Z", "ended": null})")) == "running");
    CHECK(duration(json::parse(R"({"started": null})")) == "-");
    CHECK(elapsed(json::parse(R"({"duration_ms": 42})")) == "42ms");
    CHECK(elapsed(json::parse(R"({"duration_ms": null})")) == "-");
}

TEST_CASE("final states are the domain model's") {
    for (const char* s : {"succeeded", "failed", "cancelled", "skipped"}) {
        CHECK(runEnded(s));
        CHECK(taskEnded(s));
    }
    for (const char* s : {"queued", "running", "paused"}) CHECK_FALSE(runEnded(s));
    for (const char* s : {"pending", "ready", "starting", "running", "frozen", "retrying"}) CHECK_FALSE(taskEnded(s));
    CHECK_FALSE(runEnded("lost"));
    CHECK_FALSE(taskEnded(""));
}

TEST_CASE("run views") {
    CHECK(relativeRunId("w@1", "w@1/sub.1/inner.1") == "sub.1/inner.1");
    CHECK(relativeRunId("w@1", "w@10/sub.1") == "w@10/sub.1");
    CHECK(taskNote(json::parse(R"({"message": "exit code 1", "waiting": "a slot"})")) == "exit code 1; a slot");
    CHECK(taskNote(json::parse(R"({"message": null, "waiting": "upstream"})")) == "upstream");
    const json::value run = json::parse(R"({
        "id": "w@1", "state": "running", "duration_ms": 4100,
        "tasks": [{"id": "a", "state": "succeeded"}, {"id": "b", "state": "running"},
                  {"id": "c", "state": "pending"}, {"id": "sub", "state": "running"}],
        "children": [{"id": "w@1/sub.1", "parent_task": "sub", "state": "running",
                      "tasks": [{"id": "x", "state": "skipped"}, {"id": "y", "state": "frozen"}]}]})");
    CHECK(progressLine(run) ==
          "progress: 2/6 tasks done (1 skipped, 1 succeeded); 2 running, 1 frozen, 1 pending; run running, 4.1s");
}

TEST_CASE("a run's state with the failures it absorbed") {
    CHECK(runStateText(json::parse(R"({"state": "succeeded", "failures_absorbed": 2})")) == "succeeded (2 absorbed)");
    CHECK(runStateText(json::parse(R"({"state": "failed", "failures_absorbed": 1})")) == "failed (1 absorbed)");
    CHECK(runStateText(json::parse(R"({"state": "succeeded", "failures_absorbed": 0})")) == "succeeded");
    CHECK(runStateText(json::parse(R"({"state": "succeeded"})")) == "succeeded"); // an older daemon
}

namespace {

// What f prints on std::cout.
template <class F>
std::string printed(F f) {
    std::ostringstream out;
    auto* previous = std::cout.rdbuf(out.rdbuf());
    f();
    std::cout.rdbuf(previous);
    return out.str();
}

// A run whose task "b" ran twice and whose workflow task "sub" has a child run; events out of
// recording order in the JSON, as a tree arrives.
const char* kTree = R"({
    "id": "w@1", "state": "failed",
    "events": [
        {"seq": 1, "time": "2026-11-22T10:00:00.000Z", "task": "", "kind": "created", "detail": "cron"},
        {"seq": 2, "time": "2026-11-22T10:00:00.100Z", "task": "b", "kind": "start", "detail": "attempt 1"},
        {"seq": 3, "time": "2026-11-22T10:00:01.100Z", "task": "b", "kind": "end",
         "detail": "failed: exit code 1; retry 1 of 1 in 1s"},
        {"seq": 4, "time": "2026-11-22T10:00:02.100Z", "task": "b", "kind": "start", "detail": "attempt 2"},
        {"seq": 5, "time": "2026-11-22T10:00:02.200Z", "task": "sub", "kind": "start",
         "detail": "attempt 1: child run w@1/sub.1"},
        {"seq": 9, "time": "2026-11-22T10:00:04.100Z", "task": "b", "kind": "end", "detail": "failed: exit code 2"}],
    "children": [{"id": "w@1/sub.1", "parent_task": "sub", "events": [
        {"seq": 7, "time": "2026-11-22T10:00:02.300Z", "task": "x", "kind": "start", "detail": "attempt 1"},
        {"seq": 6, "time": "2026-11-22T10:00:02.250Z", "task": "", "kind": "created", "detail": "parent\u001b"}]}]})";

} // namespace

TEST_CASE("the events of a run tree in recording order, and the tasks that ran more than once") {
    const json::value run = json::parse(kTree);
    CHECK(printed([&] { printEvents("w@1", run); }) ==
          "  TIME                        TASK         EVENT    DETAIL\n"
          "  2026-11-22 10:00:00 +00:00  (run)        created  cron\n"
          "  2026-11-22 10:00:00 +00:00  b            start    attempt 1\n"
          "  2026-11-22 10:00:01 +00:00  b            end      failed: exit code 1; retry 1 of 1 in 1s\n"
          "  2026-11-22 10:00:02 +00:00  b            start    attempt 2\n"
          "  2026-11-22 10:00:02 +00:00  sub          start    attempt 1: child run w@1/sub.1\n"
          "  2026-11-22 10:00:02 +00:00  sub.1/(run)  created  parent\\x1b\n"
          "  2026-11-22 10:00:02 +00:00  sub.1/x      start    attempt 1\n"
          "  2026-11-22 10:00:04 +00:00  b            end      failed: exit code 2\n");
    CHECK(printed([&] { printAttempts("w@1", run); }) ==
          "\nATTEMPTS (tasks that ran more than once)\n"
          "  TASK  ATTEMPT  STARTED                     DURATION  OUTCOME\n"
          "  b     1        2026-11-22 10:00:00 +00:00  1.0s      failed: exit code 1; retry 1 of 1 in 1s\n"
          "  b     2        2026-11-22 10:00:02 +00:00  2.0s      failed: exit code 2\n");
}

TEST_CASE("usage cells: CPU as user + system seconds, MEM as peak with a unit, '-' when unknown") {
    const json::value u = json::parse(R"({"source": "cgroup", "cpu_user_us": 401233, "cpu_system_us": 121939,
        "memory_peak": 12897484, "oom_kills": 0, "io_read_bytes": null, "io_write_bytes": null})");
    CHECK(cpuText(u) == "0.52s");
    CHECK(memoryText(u) == "12.3M");
    CHECK(cpuText(json::value(nullptr)) == "-");
    CHECK(memoryText(json::value(nullptr)) == "-");
    CHECK(memoryText(json::parse(R"({"memory_peak": null})")) == "-");
    CHECK(memoryText(json::parse(R"({"memory_peak": 512})")) == "512B");
    CHECK(memoryText(json::parse(R"({"memory_peak": 1536})")) == "1.5K");
    CHECK(memoryText(json::parse(R"({"memory_peak": 3221225472})")) == "3.0G");
    CHECK(cpuText(json::parse(R"({"cpu_user_us": -1, "cpu_system_us": 0})")) == "-");
    CHECK(usageEventText(R"({"attempt":2,"source":"rusage","cpu_user_us":400000,"cpu_system_us":120000,)"
                         R"("memory_peak":2048,"oom_kills":null,"io_read_bytes":null,"io_write_bytes":null})") ==
          "attempt 2: cpu 0.52s (user 0.40s, system 0.12s), memory peak 2.0K (rusage)");
    CHECK(usageEventText(R"({"attempt":1,"source":"cgroup","cpu_user_us":1,"cpu_system_us":2,"memory_peak":null,)"
                         R"("oom_kills":1,"io_read_bytes":4096,"io_write_bytes":0})") ==
          "attempt 1: cpu 0.00s (user 0.00s, system 0.00s), oom kills 1, io read 4.0K written 0B (cgroup)");
    CHECK(usageEventText("not json") == "not json");
}

TEST_CASE("measured attempts get CPU and MEM columns in the ATTEMPTS table and readable usage events") {
    const json::value run = json::parse(R"({
        "id": "w@1", "state": "succeeded",
        "events": [
            {"seq": 1, "time": "2026-11-22T10:00:00.100Z", "task": "b", "kind": "start", "detail": "attempt 1"},
            {"seq": 2, "time": "2026-11-22T10:00:01.100Z", "task": "b", "kind": "usage",
             "detail": "{\"attempt\":1,\"source\":\"cgroup\",\"cpu_user_us\":500000,\"cpu_system_us\":20000,\"memory_peak\":1048576,\"oom_kills\":null,\"io_read_bytes\":null,\"io_write_bytes\":null}"},
            {"seq": 3, "time": "2026-11-22T10:00:01.100Z", "task": "b", "kind": "leftovers",
             "detail": "2 processes left after the main process exited: killed"},
            {"seq": 4, "time": "2026-11-22T10:00:01.100Z", "task": "b", "kind": "end",
             "detail": "failed: exit code 1; retry 1 of 1 in 1s"},
            {"seq": 5, "time": "2026-11-22T10:00:02.100Z", "task": "b", "kind": "start", "detail": "attempt 2"},
            {"seq": 6, "time": "2026-11-22T10:00:04.100Z", "task": "b", "kind": "end", "detail": "succeeded"}]})");
    CHECK(printed([&] { printAttempts("w@1", run); }) ==
          "\nATTEMPTS (tasks that ran more than once)\n"
          "  TASK  ATTEMPT  STARTED                     DURATION  CPU    MEM   OUTCOME\n"
          "  b     1        2026-11-22 10:00:00 +00:00  1.0s      0.52s  1.0M  failed: exit code 1; retry 1 of 1 in 1s\n"
          "  b     2        2026-11-22 10:00:02 +00:00  2.0s      -      -     succeeded\n");
    const std::string events = printed([&] { printEvents("w@1", run); });
    CHECK(events.find("  b     usage      attempt 1: cpu 0.52s (user 0.50s, system 0.02s), memory peak 1.0M (cgroup)\n") !=
          std::string::npos);
    CHECK(events.find("  b     leftovers  2 processes left after the main process exited: killed\n") != std::string::npos);
}

TEST_CASE("--json text is valid UTF-8 even when the daemon's data is not") {
    // A param holding a dropped file's name with a byte that is not UTF-8.
    const boost::json::value v = boost::json::object{{"name\xff", "a\xff" "b"}, {"ok", "gr\xC3\xBC\xC3\x9F"}};
    const std::string text = jsonText(v);
    CHECK(text == "{\"name\xEF\xBF\xBD\":\"a\xEF\xBF\xBD" "b\",\"ok\":\"gr\xC3\xBC\xC3\x9F\"}");
    CHECK(validUtf8(text) == text);
}
