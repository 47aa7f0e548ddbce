// [[trigger]]: when a workflow runs. A time trigger (cron, every with start_at, at; each with
// jitter) or a file-drop trigger (watch with pattern, recursive, settle, after).
#include "common/time_util.h"
#include "config/workflow_load.h"

namespace taskhub::config {

using namespace detail;

const char* toString(TriggerDef::Kind k) {
    switch (k) {
    case TriggerDef::Kind::Cron: return "cron";
    case TriggerDef::Kind::Reboot: return "reboot";
    case TriggerDef::Kind::Every: return "every";
    case TriggerDef::Kind::At: return "at";
    case TriggerDef::Kind::File: return "file";
    }
    return "?";
}

bool hasDeadline(TriggerDef::Kind k) {
    return k == TriggerDef::Kind::Cron || k == TriggerDef::Kind::Every || k == TriggerDef::Kind::At;
}

bool hasDeadlineTrigger(const Workflow& wf) {
    return std::any_of(wf.triggers.begin(), wf.triggers.end(), [](const TriggerDef& t) { return hasDeadline(t.kind); });
}

std::string TriggerDef::describe() const {
    std::string out;
    switch (kind) {
    case Kind::Cron:
    case Kind::Reboot: out = "cron \"" + cron_text + "\""; break;
    case Kind::Every:
        out = "every " + formatDuration(every);
        if (start_at) out += " from " + formatIsoSeconds(*start_at);
        break;
    case Kind::At: out = "at " + formatIsoSeconds(at); break;
    case Kind::File:
        out = "watch " + watch.string() + " pattern " + pattern;
        if (recursive) out += " recursive";
        if (settle.count() > 0) out += " settle " + formatDuration(settle);
        if (after == After::Delete) out += " after delete";
        if (after == After::Move) out += " after move:" + after_dir.string();
        break;
    }
    if (jitter.count() > 0) out += " jitter " + formatDuration(jitter);
    return out;
}

namespace detail {

namespace {

const std::set<std::string> kTriggerKeys = {"cron",    "every",     "at",     "start_at", "jitter",
                                            "watch",   "pattern",   "recursive", "settle", "after"};
// The keys that only a file-drop (watch) trigger takes.
const std::set<std::string> kFileTriggerKeys = {"pattern", "recursive", "settle", "after"};

// An instant: a string with an offset, or a TOML offset date-time.
std::optional<std::chrono::sys_seconds> getInstant(const Value& v, const std::string& what, Reporter& r) {
    if (v.is_offset_datetime()) {
        const auto tp = static_cast<std::chrono::system_clock::time_point>(v.as_offset_datetime());
        return std::chrono::floor<std::chrono::seconds>(tp);
    }
    if (v.is_local_datetime()) {
        r.add(v, what + " needs an offset, e.g. 2026-12-24T18:00:00+01:00 or 2026-12-24T17:00:00Z");
        return std::nullopt;
    }
    auto text = getString(v, what, r);
    if (!text) return std::nullopt;
    std::string err;
    auto t = parseIsoInstant(*text, &err);
    if (!t) r.add(v, what + ": " + err);
    return t;
}

// FNV-1a, 64 bits: a documented hash, the same on every machine and in every version (jitter
// offsets must not move when taskhubd is upgraded).
uint64_t stableHash(std::string_view text) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

// watch = "/srv/incoming": an absolute path, kept lexically normal without a trailing '/'.
bool loadWatchDir(const Value& v, TriggerDef& def, Reporter& r) {
    auto text = getString(v, "'watch'", r);
    if (!text) return false;
    const fs::path p(*text);
    if (text->empty() || !p.is_absolute()) {
        r.add(v, "'watch' must be the absolute path of a directory, e.g. \"/srv/incoming\", found \"" + *text + "\"");
        return false;
    }
    def.kind = TriggerDef::Kind::File;
    def.watch = p.lexically_normal();
    if (def.watch.has_parent_path() && !def.watch.has_filename()) def.watch = def.watch.parent_path();
    return true;
}

// One of pattern, recursive, settle, after of a file-drop trigger.
bool loadFileTriggerKey(const std::string& key, const Value& v, TriggerDef& def, Reporter& r) {
    if (key == "pattern") {
        auto text = getString(v, "'pattern'", r);
        if (!text) return false;
        if (text->empty() || text->find('/') != std::string::npos) {
            r.add(v, "'pattern' is a glob on the file name (e.g. \"*.csv\"), not empty and without '/', found \"" +
                         *text + "\"");
            return false;
        }
        def.pattern = *text;
    } else if (key == "recursive") {
        if (!v.is_boolean()) {
            r.add(v, "'recursive' must be true or false, found " + typeName(v));
            return false;
        }
        def.recursive = v.as_boolean();
    } else if (key == "settle") {
        auto d = getDuration(v, "'settle'", r);
        if (!d) return false;
        def.settle = *d;
    } else { // after
        auto text = getString(v, "'after'", r);
        if (!text) return false;
        if (*text == "keep") {
            def.after = TriggerDef::After::Keep;
        } else if (*text == "delete") {
            def.after = TriggerDef::After::Delete;
        } else if (text->rfind("move:", 0) == 0 && fs::path(text->substr(5)).is_absolute()) {
            def.after = TriggerDef::After::Move;
            def.after_dir = fs::path(text->substr(5)).lexically_normal();
            if (!def.after_dir.has_filename()) def.after_dir = def.after_dir.parent_path();
        } else {
            r.add(v, "'after' must be \"keep\", \"delete\" or \"move:/absolute/dir\", found \"" + *text + "\"");
            return false;
        }
    }
    return true;
}

// A file moved after its run must not land where it would fire again.
bool checkAfterTarget(const Value& v, const TriggerDef& def, Reporter& r) {
    if (def.after != TriggerDef::After::Move) return true;
    const auto rel = def.after_dir.lexically_relative(def.watch);
    const bool inside = !rel.empty() && *rel.begin() != "..";
    if (def.after_dir == def.watch || (def.recursive && inside)) {
        r.add(v, "'after' moves files to " + def.after_dir.string() + ", which is watched by this trigger (" +
                     def.watch.string() + (def.recursive ? ", recursive" : "") +
                     "): the moved file would fire again; move them to a directory outside it");
        return false;
    }
    return true;
}

} // namespace

// A duration in whole seconds, at least `min`.
std::optional<std::chrono::seconds> getSeconds(const Value& v, const std::string& what, std::chrono::seconds min,
                                               Reporter& r) {
    auto d = getDuration(v, what, r);
    if (!d) return std::nullopt;
    if (d->count() % 1000 != 0 || *d < min) {
        r.add(v, what + " must be whole seconds, at least " + formatDuration(min) + ", found \"" +
                     v.as_string().str + "\"");
        return std::nullopt;
    }
    return std::chrono::duration_cast<std::chrono::seconds>(*d);
}

void loadTrigger(const Value& v, Workflow& wf, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[[trigger]] entries must be tables, found " + typeName(v));
        return;
    }
    const auto& table = v.as_table();
    TriggerDef def;
    def.line = r.lineOf(v);
    std::vector<std::string> kinds; // the kind keys present, in file order
    bool ok = true;
    const Value* start_at = nullptr;
    const Value* jitter = nullptr;
    std::vector<std::pair<std::string, const Value*>> file_keys; // pattern, recursive, settle, after
    for (const auto& [key, kv] : table) {
        if (key == "cron") {
            kinds.push_back(key);
            auto text = getString(kv, "'cron'", r);
            if (!text) {
                ok = false;
                continue;
            }
            def.line = r.lineOf(kv);
            def.cron_text = *text;
            std::string err;
            auto expr = cron::CronExpr::parse(*text, &err, wf.name); // H fields hash the workflow name
            if (!expr) {
                r.add(kv, "cron \"" + *text + "\": " + err);
                ok = false;
                continue;
            }
            def.kind = expr->isReboot() ? TriggerDef::Kind::Reboot : TriggerDef::Kind::Cron;
            def.cron = std::move(*expr);
        } else if (key == "every") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            auto d = getSeconds(kv, "'every'", std::chrono::seconds(1), r);
            if (!d) {
                ok = false;
                continue;
            }
            def.kind = TriggerDef::Kind::Every;
            def.every = *d;
        } else if (key == "at") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            auto t = getInstant(kv, "'at'", r);
            if (!t) {
                ok = false;
                continue;
            }
            def.kind = TriggerDef::Kind::At;
            def.at = *t;
        } else if (key == "start_at") {
            start_at = &kv;
        } else if (key == "jitter") {
            jitter = &kv;
        } else if (key == "watch") {
            kinds.push_back(key);
            def.line = r.lineOf(kv);
            if (!loadWatchDir(kv, def, r)) ok = false;
        } else if (kFileTriggerKeys.count(key)) {
            file_keys.emplace_back(key, &kv);
        } else {
            r.add(kv, "unknown trigger key '" + key + "'" + didYouMean(key, kTriggerKeys) + " (accepted: " +
                          joinKeys(kTriggerKeys) + ")");
            ok = false;
        }
    }
    if (kinds.empty()) {
        r.add(v, "[[trigger]] needs one of cron, every, at or watch, e.g. cron = \"30 2 * * *\", every = \"90s\", "
                 "at = \"2026-12-24T18:00:00+01:00\" or watch = \"/srv/incoming\"");
        return;
    }
    if (kinds.size() > 1) {
        r.add(v, "[[trigger]] has both '" + kinds[0] + "' and '" + kinds[1] +
                     "': a trigger has exactly one of cron, every, at or watch (write one [[trigger]] for each)");
        return;
    }
    for (const auto& [key, kv] : file_keys) {
        if (kinds[0] != "watch") {
            r.add(*kv, "'" + key + "' only applies to file-drop triggers (watch = \"/dir\"); this one has '" +
                           kinds[0] + "'");
            ok = false;
        } else if (!loadFileTriggerKey(key, *kv, def, r)) {
            ok = false;
        }
    }
    if (kinds[0] == "watch" && ok) ok = checkAfterTarget(v, def, r);
    if (kinds[0] == "watch" && jitter) {
        r.add(*jitter, "'jitter' only applies to time triggers (cron, every, at); a file fires when it is complete");
        ok = false;
        jitter = nullptr;
    }
    if (start_at) {
        if (kinds[0] != "every") {
            r.add(*start_at, "'start_at' only applies to 'every' triggers (this one has '" + kinds[0] + "')");
            ok = false;
        } else if (auto t = getInstant(*start_at, "'start_at'", r)) {
            def.start_at = *t;
        } else {
            ok = false;
        }
    }
    if (jitter) {
        if (auto j = getSeconds(*jitter, "'jitter'", std::chrono::seconds(0), r)) {
            if (def.kind == TriggerDef::Kind::Every && *j >= def.every && def.every.count() > 0) {
                r.add(*jitter, "'jitter' (" + formatDuration(*j) + ") must be shorter than the interval 'every' (" +
                                   formatDuration(def.every) + ")");
                ok = false;
            }
            def.jitter = *j;
        } else {
            ok = false;
        }
    }
    if (!ok) return;
    if (def.jitter.count() > 0) {
        const std::string key = wf.name + "#" + std::to_string(wf.triggers.size());
        def.jitter_offset = std::chrono::seconds(
            static_cast<int64_t>(stableHash(key) % static_cast<uint64_t>(def.jitter.count() + 1)));
    }
    wf.triggers.push_back(std::move(def));
}

} // namespace detail

} // namespace taskhub::config
