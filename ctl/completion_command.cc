// completion: prints the shell completion scripts (completion.h), and the live candidates they
// ask for while the user presses Tab.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "completion.h"
#include "next_preview.h"

namespace taskhub::ctl {

namespace {

namespace json = boost::json;

// How long --candidates waits for the daemon: a Tab must not hang on a stuck daemon.
constexpr unsigned kCandidateTimeoutSeconds = 1;

void quietExit(int) { _exit(0); }

// The string field key of each object in array a (when a is one).
void collect(const json::value* a, const char* key, std::vector<std::string>* out) {
    if (!a || !a->is_array()) return;
    for (const auto& item : a->as_array()) {
        if (!item.is_object()) continue;
        const json::value* v = item.as_object().if_contains(key);
        if (v && v->is_string()) out->emplace_back(v->as_string());
    }
}

// The daemon's names of kind (workflows, runs, plugins); none when it does not answer in time,
// or refuses.
std::vector<std::string> liveCandidates(const Context& ctx, const std::string& kind) {
    std::vector<std::string> out;
    // The alarm ends the process quietly with exit status 0 when the daemon hangs; nothing has
    // been printed yet.
    struct sigaction sa{};
    sa.sa_handler = quietExit;
    ::sigaction(SIGALRM, &sa, nullptr);
    ::alarm(kCandidateTimeoutSeconds);
    Failure f;
    if (kind == "workflows") {
        if (auto d = ctx.client.call("list", {}, &f); d && d->is_object()) {
            collect(d->as_object().if_contains("workflows"), "name", &out);
        }
    } else if (kind == "runs") {
        if (auto d = ctx.client.call("runs", {{"limit", 200}, {"all", true}}, &f)) collect(&*d, "id", &out);
    } else if (kind == "plugins") {
        if (auto d = ctx.client.call("plugins", {}, &f); d && d->is_object()) {
            collect(d->as_object().if_contains("plugins"), "name", &out);
        }
    }
    ::alarm(0);
    return out;
}

std::string kindList() {
    std::string out;
    for (auto k : kCandidateKinds) out += (out.empty() ? "" : ", ") + std::string(k);
    return out;
}

int cmdCompletion(const Context& ctx, const Invocation& in) {
    if (auto kind = in.value("--candidates")) {
        if (!in.args.empty()) return usageError("completion --candidates KIND takes no SHELL", in.command->name);
        std::vector<std::string> names;
        if (*kind == "zones") {
            names = zoneNames();
        } else if (std::find(kCandidateKinds.begin(), kCandidateKinds.end(), *kind) != kCandidateKinds.end()) {
            names = liveCandidates(ctx, *kind);
        } else {
            return usageError("--candidates: expected one of " + kindList() + ", found '" + *kind + "'", in.command->name);
        }
        std::fputs(candidateLines(names).c_str(), stdout);
        return 0;
    }
    if (in.args.empty()) return usageError("completion takes SHELL (bash, zsh or fish), or --candidates KIND", in.command->name);
    const std::string script = completionScript(in.args[0]);
    if (script.empty()) return usageError("completion: expected bash, zsh or fish, found '" + in.args[0] + "'", in.command->name);
    std::fputs(script.c_str(), stdout);
    return 0;
}

} // namespace

std::vector<Command> completionCommands() {
    return {
        {"completion", "[SHELL]", 0, 1, "at most one argument: SHELL (bash, zsh or fish)", Section::Offline,
         "print the completion script for SHELL (bash, zsh or fish), generated from this command table; "
         "`source <(taskhubctl completion bash)` loads it (installed packages load it by themselves). "
         "--candidates KIND: print the names the scripts offer, one per line (workflows, runs, plugins: from "
         "the daemon, nothing when it does not answer within a second; zones: the system's time zones)",
         {{"--candidates", {}, "KIND", "workflows, runs, plugins or zones", false,
           "print the candidates of KIND (workflows, runs, plugins, zones) instead of a script",
           Values::CandidateKind}},
         cmdCompletion, {Values::Shell}},
    };
}

} // namespace taskhub::ctl
