#include "commands.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "render.h"
#include "term.h"

namespace taskhub::ctl {

namespace {

bool json_errors = false;

int report(const std::string& code, const std::string& why, const std::string& hint, int exit_code) {
    if (json_errors) {
        boost::json::object e;
        // JSON text is UTF-8: a daemon's message may carry other bytes (a dropped file's name).
        e["code"] = validUtf8(code);
        e["message"] = validUtf8(why);
        if (!hint.empty()) e["hint"] = validUtf8(hint);
        emitJson(boost::json::object{{"error", std::move(e)}});
        std::cout.flush();
    } else {
        std::fprintf(stderr, "taskhubctl: %s\n%s", terminalSafe(why).c_str(), hint.empty() ? "" : (hint + "\n").c_str());
    }
    return exit_code;
}

} // namespace

void setJsonErrors(bool on) { json_errors = on; }

int failed(const std::string& why, int code) {
    return report(code == 2 ? "usage" : code == 3 ? "unreachable" : "failed", why, "", code);
}

int failed(const Failure& f) {
    return report(f.code.empty() ? "failed" : f.code, f.message, "", f.exit_code);
}

int usageError(const std::string& why, std::string_view command) {
    const std::string name(command);
    std::string message = why;
    if (!name.empty() && !why.starts_with(name + " ") && !why.starts_with(name + ":")) message = name + ": " + why;
    return report("usage", message, "see 'taskhubctl " + (name.empty() ? "" : name + " ") + "--help'", 2);
}

std::optional<int> countOption(const Invocation& in, std::string_view name, int def, long max, std::string* err) {
    auto v = in.value(name);
    if (!v) return def;
    char* end = nullptr;
    long n = std::strtol(v->c_str(), &end, 10);
    if (v->empty() || !end || *end || n <= 0 || n > max) {
        *err = std::string(name) + " needs a number from 1 to " + std::to_string(max) + ", found '" + *v + "'";
        return std::nullopt;
    }
    return static_cast<int>(n);
}

bool request(const Context& ctx, std::string_view cmd, boost::json::object args, boost::json::value* out,
             int* exit_code) {
    Failure f;
    auto d = ctx.client.call(cmd, std::move(args), &f);
    if (!d) {
        *exit_code = failed(f);
        return false;
    }
    *out = std::move(*d);
    return true;
}

} // namespace taskhub::ctl
