#include "commands.h"

#include <cstdio>
#include <cstdlib>

namespace taskhub::ctl {

int failed(const std::string& why, int code) {
    std::fprintf(stderr, "taskhubctl: %s\n", why.c_str());
    return code;
}

int failed(const Failure& f) { return failed(f.message, f.exit_code); }

int usageError(const std::string& why) {
    std::fprintf(stderr, "taskhubctl: %s\n%s", why.c_str(), usageText().c_str());
    return 2;
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
