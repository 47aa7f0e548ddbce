// The Slurm executor's pure parts: its parameters and what they become on sbatch's command line,
// and what Slurm's answers mean (squeue --json of Slurm 22.05 as seen on our machines, sacct -P).
// The plugin against a real cluster: tests/system/test_slurm.py.
#include <catch2/catch.hpp>

#include <taskhub/plugin.hpp>

#include "slurm_params.h"
#include "slurm_state.h"

using namespace taskhub::plugins::slurm;

namespace {

std::string problem(const std::string& json) {
    try {
        parseParams(json);
    } catch (const taskhub::sdk::InvalidParam& e) {
        return e.key() + ": " + e.what();
    }
    return "";
}

} // namespace

TEST_CASE("slurm: parameters become sbatch options, one argument each", "[slurm]") {
    const Params p = parseParams(R"({"command":"srun ./sim --case 'a b'","partition":"compute","time_limit":"90m",
        "cpus":8,"mem":"16G","nodes":"2-4","ntasks":16,"gpus":"a100:2","account":"proj","qos":"normal",
        "array":"0-99%10","workdir":"/srv/jobs","extra_args":["--exclusive","--constraint=ib"]})");
    CHECK(p.time_limit_minutes == 90u);
    const auto args = sbatchArgs(p, "wf.sim", "taskhub run=wf@1 task=sim attempt=2", "/out", JobOwner{1000, 100}, "");
    CHECK(args == std::vector<std::string>{
                      "--parsable", "--job-name=wf.sim", "--comment=taskhub run=wf@1 task=sim attempt=2",
                      "--output=/out/taskhub-%A_%a.out", "--error=/out/taskhub-%A_%a.out", "--uid=1000", "--gid=100",
                      "--partition=compute", "--time=90", "--cpus-per-task=8", "--ntasks=16", "--mem=16G",
                      "--nodes=2-4", "--gpus=a100:2", "--account=proj", "--qos=normal", "--array=0-99%10",
                      "--chdir=/srv/jobs", "--exclusive", "--constraint=ib"});
    CHECK(batchScript(p) == "#!/bin/sh\nsrun ./sim --case 'a b'\n");

    const Params s = parseParams(R"J({"script":"/srv/jobs/run.sh","args":["--case","$(rm -rf /)"],"time_limit":"30s"})J");
    CHECK(s.time_limit_minutes == 1u); // whole minutes, rounded up
    const auto sargs = sbatchArgs(s, "wf.t", "c", "/out", std::nullopt, s.script);
    CHECK(sargs.back() == "$(rm -rf /)"); // an argument of the script, never shell text
    CHECK(sargs[sargs.size() - 3] == "/srv/jobs/run.sh");
    CHECK(sargs[3] == "--output=/out/taskhub-%j.out");
}

TEST_CASE("slurm: bad parameters are refused with the key and what is right", "[slurm]") {
    CHECK(problem(R"({})") == "command: set 'command' (the shell command the batch job runs) or 'script' (the path of a batch script)");
    CHECK(problem(R"({"command":"x","script":"/a"})") == "script: 'command' and 'script' cannot both be set (keep one)");
    CHECK(problem(R"({"command":"x","partiton":"a"})").find("unknown parameter 'partiton' for plugin slurm") != std::string::npos);
    CHECK(problem(R"({"command":"x","partiton":"a"})").find("did you mean 'partition'?") != std::string::npos);
    CHECK(problem(R"({"command":"x","mem":"16GB"})") ==
          "mem: 'mem' must be a whole number with an optional unit K, M, G or T (memory per node, like \"16G\"), found \"16GB\"");
    CHECK(problem(R"({"command":"x","time_limit":"2 hours"})").rfind("time_limit: 'time_limit' must be a duration", 0) == 0);
    CHECK(problem(R"({"command":"x","cpus":0})") == "cpus: 'cpus' must be between 1 and 1073741824 (CPUs per task, --cpus-per-task), found 0");
    CHECK(problem(R"({"command":"x","array":"0-9;rm"})").rfind("array: 'array' must be job array indices", 0) == 0);
    CHECK(problem(R"({"command":"x","account":"a\nb"})").find("must not contain control characters") != std::string::npos);
    CHECK(problem(R"({"command":"x","extra_args":["-x"]})").find("starting with \"--\"") != std::string::npos);
    CHECK(problem(R"({"script":"run.sh"})").find("'script' must be an absolute path") != std::string::npos);
    CHECK(problem(R"({"command":"x","args":["a"]})").rfind("args: 'args' are the arguments of 'script'", 0) == 0);
    // A template is checked when the attempt starts, with its value.
    CHECK(problem(R"({"command":"x","mem":"${params.mem}","partition":"${params.p}"})").empty());
}

TEST_CASE("slurm: settings", "[slurm]") {
    const Config c = parseConfig(R"({"slurm_conf":"/etc/slurm/slurm.conf","poll_interval":"500ms","sacct":"never"})");
    CHECK(c.slurm_conf == "/etc/slurm/slurm.conf");
    CHECK(c.poll_interval_ms == 500u);
    CHECK_FALSE(c.sacct);
    CHECK_THROWS_WITH(parseConfig(R"({"poll_intervall":"1s"})"),
                      Catch::Contains("unknown setting 'poll_intervall' in [plugins.slurm]") &&
                          Catch::Contains("did you mean 'poll_interval'?"));
    CHECK_THROWS_WITH(parseConfig(R"({"poll_interval":"10ms"})"), Catch::Contains("between 100ms and 1d"));
    CHECK_THROWS_WITH(parseConfig(R"({"output_dir":"rel"})"), Catch::Contains("must be an absolute path"));
}

TEST_CASE("slurm: squeue --json of 22.05, and the verdict for each way a job ends", "[slurm]") {
    const std::string json = R"({"meta":{},"errors":[],"jobs":[
      {"job_id":41,"array_job_id":0,"array_task_id":null,"job_state":"COMPLETED","state_reason":"None","exit_code":0,
       "name":"wf.a","comment":"taskhub run=wf@1 task=a attempt=1","standard_output":"\/out\/taskhub-%j.out"},
      {"job_id":42,"array_job_id":0,"array_task_id":null,"job_state":"FAILED","state_reason":"NonZeroExitCode","exit_code":768},
      {"job_id":43,"array_job_id":0,"job_state":"FAILED","state_reason":"JobLaunchFailure","exit_code":9},
      {"job_id":44,"array_job_id":0,"job_state":"TIMEOUT","state_reason":"TimeLimit","exit_code":15},
      {"job_id":45,"array_job_id":0,"job_state":"CANCELLED","state_reason":"None","exit_code":15},
      {"job_id":46,"array_job_id":0,"job_state":["RUNNING"],"state_reason":"None","exit_code":0}]})";
    std::string err;
    auto jobs = parseSqueue(json, &err);
    REQUIRE(jobs);
    REQUIRE(jobs->size() == 6);
    CHECK((*jobs)[0].comment == "taskhub run=wf@1 task=a attempt=1");
    CHECK((*jobs)[0].standard_output == "/out/taskhub-%j.out");
    CHECK((*jobs)[5].state == "RUNNING"); // a later Slurm's list form
    CHECK_FALSE(isFinal("RUNNING"));
    CHECK(isFinal("OUT_OF_MEMORY"));

    auto v = jobVerdict(41, (*jobs)[0], false);
    CHECK((v.outcome == TH_OUTCOME_SUCCEEDED && v.message == "Slurm job 41 COMPLETED"));
    v = jobVerdict(42, (*jobs)[1], false);
    CHECK((v.outcome == TH_OUTCOME_FAILED && v.exit_code == 3 && v.message == "Slurm job 42 FAILED with exit code 3"));
    v = jobVerdict(43, (*jobs)[2], false);
    CHECK((v.exit_code == -1 && v.message == "Slurm job 43 FAILED: killed by signal 9 (reason JobLaunchFailure)"));
    CHECK(jobVerdict(44, (*jobs)[3], false).message == "Slurm job 44 TIMEOUT: it reached its time limit");
    v = jobVerdict(45, (*jobs)[4], true);
    CHECK((v.outcome == TH_OUTCOME_CANCELLED && v.message == "Slurm job 45 CANCELLED by taskhubd"));
    v = jobVerdict(45, (*jobs)[4], false);
    CHECK((v.outcome == TH_OUTCOME_FAILED &&
           v.message == "Slurm job 45 CANCELLED outside taskhubd (scancel by its owner or an administrator)"));
    JobInfo oom;
    oom.state = "OUT_OF_MEMORY";
    CHECK(jobVerdict(7, oom, false).message == "Slurm job 7 OUT_OF_MEMORY: it ran out of memory");
    for (const auto& [state, text] : std::vector<std::pair<std::string, std::string>>{
             {"NODE_FAIL", "a node it ran on failed"},
             {"PREEMPTED", "a job with higher priority took its resources"},
             {"BOOT_FAIL", "a node failed to boot"},
             {"DEADLINE", "it reached its deadline"}}) {
        JobInfo j;
        j.state = state;
        v = jobVerdict(8, j, false);
        CHECK((v.outcome == TH_OUTCOME_FAILED && v.message == "Slurm job 8 " + state + ": " + text));
    }
}

TEST_CASE("slurm: an answer with errors is a failure, not an empty queue", "[slurm]") {
    std::string err;
    CHECK_FALSE(parseSqueue(R"J({"errors":[{"description":"Failed while looking for jobs","error":"Unable to contact slurm controller (connect failure)"}],"jobs":[]})J", &err));
    CHECK(err == "squeue reported an error: Failed while looking for jobs (Unable to contact slurm controller (connect failure))");
    CHECK_FALSE(parseSqueue("not json", &err));
    CHECK(err.rfind("squeue --json did not answer JSON", 0) == 0);
}

TEST_CASE("slurm: arrays end with a summary per element", "[slurm]") {
    auto element = [](uint64_t index, uint64_t job, const char* state, int64_t code) {
        JobInfo i;
        i.state = state;
        i.exit_code = code;
        return Element{index, job, i};
    };
    auto v = arrayVerdict(42, {element(0, 43, "COMPLETED", 0), element(1, 44, "COMPLETED", 0),
                               element(2, 45, "FAILED", 1792), element(3, 42, "COMPLETED", 0)}, false);
    CHECK(v.outcome == TH_OUTCOME_FAILED);
    CHECK(v.message == "Slurm array job 42: 4 elements, 3 COMPLETED, 1 FAILED (element 2: exit code 7)");
    v = arrayVerdict(42, {element(0, 43, "COMPLETED", 0), element(1, 44, "COMPLETED", 0)}, false);
    CHECK((v.outcome == TH_OUTCOME_SUCCEEDED && v.message == "Slurm array job 42: 2 elements, 2 COMPLETED"));
    v = arrayVerdict(42, {element(0, 42, "CANCELLED", 15), element(1, 42, "CANCELLED", 15)}, true);
    CHECK((v.outcome == TH_OUTCOME_CANCELLED &&
           v.message == "Slurm array job 42: 2 elements, 2 CANCELLED (element 0: CANCELLED; element 1: CANCELLED) by taskhubd"));
    CHECK(arrayIndices("1-3%1") == std::vector<uint64_t>{1, 2, 3});
    CHECK(arrayIndices("0-10:5,7") == std::vector<uint64_t>{0, 5, 10, 7});
    CHECK(arrayIndices("0-4000000000", 5).size() == 5);
}

TEST_CASE("slurm: sacct -P lines", "[slurm]") {
    const auto r = parseSacct("42|COMPLETED|0:0\n43|CANCELLED by 0|0:15\n44_3|FAILED|7:0\n");
    REQUIRE(r.size() == 3);
    CHECK(r.at("42").state == "COMPLETED");
    CHECK(r.at("43").state == "CANCELLED");
    CHECK(r.at("43").exit_code == 15);
    CHECK(r.at("44_3").exit_code == 7 << 8);
}
