// cgroup/resources.h: cpu_max arithmetic, the limit files exactly as written into an attempt's
// cgroup, merging workflow and task limits, the refusal messages, the memory-limit message, and
// the parsers of cpu.stat, memory.events and io.stat as the kernel writes them.
#include <catch2/catch.hpp>

#include "cgroup/resources.h"

using namespace taskhub::cgroup;

namespace {

std::optional<uint64_t> cpu(const std::string& text, std::string* err = nullptr) {
    std::string ignored;
    return parseCpuMax(text, err ? err : &ignored);
}

} // namespace

TEST_CASE("parseCpuMax: a share of one CPU or a number of CPUs, per 100 ms period", "[cgroup][resources]") {
    CHECK(cpu("50%") == 50'000u);
    CHECK(cpu("100%") == 100'000u);
    CHECK(cpu("250%") == 250'000u);
    CHECK(cpu("1.5") == 150'000u);
    CHECK(cpu("2") == 200'000u);
    CHECK(cpu("0.01") == 1'000u);
    CHECK(cpu("1%") == 1'000u);
    CHECK(cpu("4096") == 409'600'000u);
    CHECK(cpu("12.5%") == 12'500u);
}

TEST_CASE("parseCpuMax: what is refused, and the message says what would be right", "[cgroup][resources]") {
    for (const char* bad : {"", "%", "abc", "50 %", " 50%", "50%%", "1.5x", "-1", "0", "0%", "nan", "inf", "1e999",
                            "0x10"}) {
        INFO(bad);
        std::string err;
        CHECK_FALSE(cpu(bad, &err));
        CHECK(err == "cpu_max must be a share of one CPU such as \"50%\" or a number of CPUs such as \"1.5\", found \"" +
                         std::string(bad) + "\"");
    }
    for (const char* out_of_range : {"0.5%", "0.009", "4097", "409700%"}) {
        INFO(out_of_range);
        std::string err;
        CHECK_FALSE(cpu(out_of_range, &err));
        CHECK(err == "cpu_max must be between \"1%\" (0.01 CPUs) and 4096 CPUs, found \"" + std::string(out_of_range) +
                         "\"");
    }
}

TEST_CASE("limitFiles: each set limit's file and content, in a fixed order", "[cgroup][resources]") {
    CHECK(limitFiles(Limits{}).empty());
    Limits all;
    all.memory_max = 268'435'456;
    all.cpu_quota_us = 50'000;
    all.tasks_max = 64;
    all.io_weight = 200;
    CHECK(limitFiles(all) == std::vector<std::pair<std::string, std::string>>{{"memory.max", "268435456"},
                                                                              {"cpu.max", "50000 100000"},
                                                                              {"pids.max", "64"},
                                                                              {"io.weight", "default 200"}});
    Limits pids;
    pids.tasks_max = 1;
    CHECK(limitFiles(pids) == std::vector<std::pair<std::string, std::string>>{{"pids.max", "1"}});
    CHECK(requiredControllers(all) == std::set<std::string>{"cpu", "io", "memory", "pids"});
    CHECK(requiredControllers(pids) == std::set<std::string>{"pids"});
    CHECK(requiredControllers(Limits{}).empty());
}

TEST_CASE("merged: the task's own limit wins, key by key, with its text", "[cgroup][resources]") {
    Limits wf;
    wf.memory_max = 1 << 30;
    wf.memory_max_text = "1G";
    wf.cpu_quota_us = 50'000;
    wf.cpu_max_text = "50%";
    wf.tasks_max = 100;
    Limits task;
    task.memory_max = 256 << 20;
    task.memory_max_text = "256M";
    task.io_weight = 10;
    const Limits m = merged(wf, task);
    CHECK(m.memory_max == 256u << 20);
    CHECK(m.memory_max_text == "256M");
    CHECK(m.cpu_quota_us == 50'000u);
    CHECK(m.cpu_max_text == "50%");
    CHECK(m.tasks_max == 100u);
    CHECK(m.io_weight == 10u);
    CHECK(merged(wf, Limits{}) == wf);
    CHECK(merged(Limits{}, task) == task);
}

TEST_CASE("unsupported: names the key, the controller, what is there and what to change", "[cgroup][resources]") {
    Limits mem;
    mem.memory_max = 1 << 20;
    Limits two = mem;
    two.tasks_max = 5;
    const Support hybrid{true, {"hugetlb"}, {}, "the memory controller belongs to cgroup v1 here"};
    CHECK(unsupported(Limits{}, Support{}) == std::nullopt);
    CHECK(unsupported(mem, Support{true, {"memory"}, {}, {}}) == std::nullopt);
    CHECK(unsupported(mem, hybrid) ==
          "memory_max needs the memory controller, which taskhubd's cgroup does not offer (available: hugetlb); "
          "the memory controller belongs to cgroup v1 here");
    CHECK(unsupported(two, Support{true, {}, {}, {}}) ==
          "memory_max, tasks_max needs the memory, pids controllers, which taskhubd's cgroup does not offer "
          "(available: none)");
    CHECK(unsupported(two, Support{true, {"pids"}, {}, {}}) ==
          "memory_max needs the memory controller, which taskhubd's cgroup does not offer (available: pids)");
    CHECK(unsupported(mem, Support{false, {}, "cgroup2 is not mounted", {}}) ==
          "memory_max needs cgroup containment, which is unavailable (cgroup2 is not mounted); taskhubd runs tasks "
          "in process groups and cannot apply limits (remove the key, or give taskhubd a writable cgroup2: under "
          "systemd, Delegate=yes)");
    // Without a reason given, the message still says what is missing.
    CHECK(unsupported(mem, Support{}) ==
          "memory_max needs cgroup containment, which is unavailable (cgroups unavailable); taskhubd runs tasks in "
          "process groups and cannot apply limits (remove the key, or give taskhubd a writable cgroup2: under "
          "systemd, Delegate=yes)");
}

TEST_CASE("memoryLimitMessage: only for a memory limit that killed", "[cgroup][resources]") {
    Limits l;
    CHECK(memoryLimitMessage(l, 1) == std::nullopt);
    l.memory_max = 256u << 20;
    CHECK(memoryLimitMessage(l, 0) == std::nullopt);
    CHECK(memoryLimitMessage(l, 1) == "killed: memory limit 268435456 reached (oom_kill 1)");
    l.memory_max_text = "256M";
    CHECK(memoryLimitMessage(l, 3) == "killed: memory limit 256M reached (oom_kill 3)");
    CHECK(std::string(toString(Leftovers::Kill)) == "kill");
    CHECK(std::string(toString(Leftovers::Keep)) == "keep");
    CHECK(std::string(toString(Usage::Source::Cgroup)) == "cgroup");
    CHECK(std::string(toString(Usage::Source::Rusage)) == "rusage");
}

TEST_CASE("parseCpuStat: user and system time of a real cpu.stat", "[cgroup][resources]") {
    // As kernel 6.x writes it (without the cpu controller: the first three lines only).
    const std::string with_controller = "usage_usec 523172\nuser_usec 401233\nsystem_usec 121939\n"
                                        "core_sched.force_idle_usec 0\nnr_periods 12\nnr_throttled 3\n"
                                        "throttled_usec 81234\nnr_bursts 0\nburst_usec 0\n";
    Usage u;
    CHECK(parseCpuStat(with_controller, &u));
    CHECK(u.cpu_user_us == 401'233u);
    CHECK(u.cpu_system_us == 121'939u);
    Usage v;
    CHECK(parseCpuStat("usage_usec 7\nuser_usec 5\nsystem_usec 2\n", &v));
    CHECK(v.cpu_user_us == 5u);
    CHECK(v.cpu_system_us == 2u);
    Usage none;
    CHECK_FALSE(parseCpuStat("", &none));
    CHECK_FALSE(parseCpuStat("usage_usec 9\nuser_usecs 4\nuser_usec x\n", &none));
    CHECK(none == Usage{});
}

TEST_CASE("parseMemoryEvents: oom_kill of a real memory.events", "[cgroup][resources]") {
    Usage u;
    CHECK(parseMemoryEvents("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", &u));
    CHECK(u.oom_kills == 1u);
    Usage none;
    CHECK_FALSE(parseMemoryEvents("low 0\nhigh 0\nmax 0\noom 0\n", &none));
    CHECK_FALSE(none.oom_kills);
    // "oom_group_kill" is not "oom_kill".
    CHECK_FALSE(parseMemoryEvents("oom_group_kill 4\n", &none));
}

TEST_CASE("parseIoStat: bytes read and written, summed over devices", "[cgroup][resources]") {
    Usage u;
    CHECK(parseIoStat("259:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                      "8:0 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                      &u));
    CHECK(u.io_read_bytes == 4196u);
    CHECK(u.io_write_bytes == 8192u);
    // No I/O yet: the file is empty, and that is zero, not unknown.
    Usage empty;
    CHECK_FALSE(parseIoStat("", &empty));
    CHECK(empty.io_read_bytes == 0u);
    CHECK(empty.io_write_bytes == 0u);
    Usage junk;
    CHECK_FALSE(parseIoStat("garbage here\n", &junk));
    CHECK_FALSE(junk.io_read_bytes);
}
