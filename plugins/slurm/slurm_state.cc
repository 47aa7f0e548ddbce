#include "slurm_state.h"

#include <taskhub/plugin_api.h>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>

namespace taskhub::plugins::slurm {
namespace {

namespace json = boost::json;

std::string str(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    if (v && v->is_string()) return std::string(v->get_string());
    if (v && v->is_array() && !v->get_array().empty() && v->get_array()[0].is_string()) {
        return std::string(v->get_array()[0].get_string()); // newer Slurm: job_state is a list
    }
    return {};
}

std::optional<uint64_t> unsignedOf(const json::value* v) {
    if (!v) return std::nullopt;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<uint64_t>(v->get_int64());
    if (v->is_object()) { // newer Slurm: {"set": true, "infinite": false, "number": 3}
        const auto& o = v->get_object();
        const json::value* set = o.if_contains("set");
        if (set && set->is_bool() && !set->get_bool()) return std::nullopt;
        return unsignedOf(o.if_contains("number"));
    }
    return std::nullopt;
}

std::optional<uint64_t> number(std::string_view s) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return n;
}

// "exit code 3", "killed by signal 9" from a raw wait status.
std::string exitText(int64_t status) {
    const int64_t sig = status & 0x7f;
    if (sig != 0) return "killed by signal " + std::to_string(sig);
    return "exit code " + std::to_string((status >> 8) & 0xff);
}

} // namespace

std::optional<std::vector<JobInfo>> parseSqueue(std::string_view text, std::string* err) {
    json::error_code ec;
    json::value root = json::parse(text, ec);
    if (ec || !root.is_object()) {
        *err = "squeue --json did not answer JSON" + (ec ? ": " + ec.message() : std::string());
        return std::nullopt;
    }
    const auto& o = root.get_object();
    if (const json::value* errors = o.if_contains("errors"); errors && errors->is_array() && !errors->get_array().empty()) {
        const json::value& first = errors->get_array()[0];
        std::string what = first.is_object() ? str(first.get_object(), "description") : std::string();
        std::string detail = first.is_object() ? str(first.get_object(), "error") : std::string();
        *err = "squeue reported an error: " + (what.empty() ? std::string("no description") : what) +
               (detail.empty() ? "" : " (" + detail + ")");
        return std::nullopt;
    }
    const json::value* jobs = o.if_contains("jobs");
    if (!jobs || !jobs->is_array()) {
        *err = "squeue --json answered without a \"jobs\" list";
        return std::nullopt;
    }
    std::vector<JobInfo> out;
    for (const auto& j : jobs->get_array()) {
        if (!j.is_object()) continue;
        const auto& jo = j.get_object();
        JobInfo info;
        auto id = unsignedOf(jo.if_contains("job_id"));
        if (!id) continue;
        info.job_id = *id;
        info.array_job_id = unsignedOf(jo.if_contains("array_job_id")).value_or(0);
        info.array_task_id = unsignedOf(jo.if_contains("array_task_id"));
        info.array_task_string = str(jo, "array_task_string");
        info.state = str(jo, "job_state");
        info.reason = str(jo, "state_reason");
        if (const json::value* e = jo.if_contains("exit_code")) {
            if (e->is_int64()) info.exit_code = e->get_int64();
            else if (e->is_uint64()) info.exit_code = static_cast<int64_t>(e->get_uint64());
            else if (auto n = unsignedOf(e)) info.exit_code = static_cast<int64_t>(*n);
        }
        info.name = str(jo, "name");
        info.comment = str(jo, "comment");
        info.standard_output = str(jo, "standard_output");
        out.push_back(std::move(info));
    }
    return out;
}

std::map<std::string, JobInfo> parseSacct(std::string_view text) {
    std::map<std::string, JobInfo> out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        const size_t a = line.find('|');
        const size_t b = a == std::string_view::npos ? a : line.find('|', a + 1);
        if (b == std::string_view::npos) continue;
        JobInfo info;
        const std::string id(line.substr(0, a));
        std::string state(line.substr(a + 1, b - a - 1));
        if (auto by = state.find(" by "); by != std::string::npos) state.resize(by);
        info.state = state;
        const std::string_view code = line.substr(b + 1);
        const size_t colon = code.find(':');
        auto exit = number(code.substr(0, colon));
        auto sig = colon == std::string_view::npos ? std::optional<uint64_t>(0) : number(code.substr(colon + 1));
        info.exit_code = static_cast<int64_t>(((exit.value_or(0) & 0xff) << 8) | (sig.value_or(0) & 0x7f));
        if (auto n = number(id)) info.job_id = *n;
        out.emplace(id, std::move(info));
    }
    return out;
}

bool isFinal(std::string_view s) {
    return s == "COMPLETED" || s == "FAILED" || s == "TIMEOUT" || s == "OUT_OF_MEMORY" || s == "CANCELLED" ||
           s == "NODE_FAIL" || s == "PREEMPTED" || s == "BOOT_FAIL" || s == "DEADLINE" || s == "SPECIAL_EXIT" ||
           s == "REVOKED";
}

Verdict jobVerdict(uint64_t job_id, const JobInfo& job, bool cancelled_by_us) {
    const std::string head = "Slurm job " + std::to_string(job_id) + " " + job.state;
    const std::string& s = job.state;
    Verdict v;
    v.outcome = TH_OUTCOME_FAILED;
    if (s == "COMPLETED") {
        v.outcome = TH_OUTCOME_SUCCEEDED;
        v.exit_code = 0;
        v.message = head;
    } else if (s == "FAILED") {
        if ((job.exit_code & 0x7f) == 0) v.exit_code = static_cast<int>((job.exit_code >> 8) & 0xff);
        v.message = head + ((job.exit_code & 0x7f) != 0 ? ": " : " with ") + exitText(job.exit_code);
        if (!job.reason.empty() && job.reason != "None" && job.reason != "NonZeroExitCode")
            v.message += " (reason " + job.reason + ")";
    } else if (s == "TIMEOUT") {
        v.message = head + ": it reached its time limit";
    } else if (s == "OUT_OF_MEMORY") {
        v.message = head + ": it ran out of memory";
    } else if (s == "CANCELLED") {
        if (cancelled_by_us) {
            v.outcome = TH_OUTCOME_CANCELLED;
            v.message = head + " by taskhubd";
        } else {
            v.message = head + " outside taskhubd (scancel by its owner or an administrator)";
        }
    } else if (s == "NODE_FAIL") {
        v.message = head + ": a node it ran on failed";
    } else if (s == "PREEMPTED") {
        v.message = head + ": a job with higher priority took its resources";
    } else if (s == "BOOT_FAIL") {
        v.message = head + ": a node failed to boot";
    } else if (s == "DEADLINE") {
        v.message = head + ": it reached its deadline";
    } else {
        v.message = head + (job.reason.empty() || job.reason == "None" ? "" : " (reason " + job.reason + ")");
    }
    return v;
}

Verdict arrayVerdict(uint64_t array_job_id, const std::vector<Element>& elements, bool cancelled_by_us) {
    std::map<std::string, size_t> by_state;
    std::vector<const Element*> failed;
    for (const auto& e : elements) {
        ++by_state[e.info.state];
        if (e.info.state != "COMPLETED") failed.push_back(&e);
    }
    Verdict v;
    std::string m = "Slurm array job " + std::to_string(array_job_id) + ": " + std::to_string(elements.size()) +
                    (elements.size() == 1 ? " element" : " elements");
    // COMPLETED first, then the others by name.
    if (auto it = by_state.find("COMPLETED"); it != by_state.end()) m += ", " + std::to_string(it->second) + " COMPLETED";
    for (const auto& [state, n] : by_state) {
        if (state != "COMPLETED") m += ", " + std::to_string(n) + " " + state;
    }
    if (failed.empty()) {
        v.outcome = TH_OUTCOME_SUCCEEDED;
        v.exit_code = 0;
        v.message = m;
        return v;
    }
    std::string detail;
    const size_t shown = std::min<size_t>(failed.size(), 5);
    for (size_t i = 0; i < shown; ++i) {
        const Element& e = *failed[i];
        std::string what;
        if (e.info.state == "FAILED") what = exitText(e.info.exit_code);
        else what = e.info.state;
        detail += (i ? "; " : "") + std::string("element ") + std::to_string(e.index) + ": " + what;
    }
    if (failed.size() > shown) detail += "; " + std::to_string(failed.size() - shown) + " more";
    m += " (" + detail + ")";
    const bool all_cancelled = by_state.size() == 1 && by_state.count("CANCELLED");
    v.outcome = cancelled_by_us && by_state.count("CANCELLED") ? TH_OUTCOME_CANCELLED : TH_OUTCOME_FAILED;
    if (cancelled_by_us && all_cancelled) m += " by taskhubd";
    v.message = m;
    return v;
}

std::vector<uint64_t> arrayIndices(std::string_view spec, size_t limit) {
    std::vector<uint64_t> out;
    if (auto pct = spec.find('%'); pct != std::string_view::npos) spec = spec.substr(0, pct);
    size_t pos = 0;
    while (pos <= spec.size() && out.size() < limit) {
        size_t end = spec.find(',', pos);
        if (end == std::string_view::npos) end = spec.size();
        std::string_view part = spec.substr(pos, end - pos);
        pos = end + 1;
        uint64_t step = 1;
        if (auto colon = part.find(':'); colon != std::string_view::npos) {
            step = number(part.substr(colon + 1)).value_or(1);
            if (step == 0) step = 1;
            part = part.substr(0, colon);
        }
        const size_t dash = part.find('-');
        auto lo = number(part.substr(0, dash));
        auto hi = dash == std::string_view::npos ? lo : number(part.substr(dash + 1));
        if (!lo || !hi) continue;
        for (uint64_t i = *lo; i <= *hi && out.size() < limit; i += step) out.push_back(i);
        if (end == spec.size()) break;
    }
    return out;
}

} // namespace taskhub::plugins::slurm
