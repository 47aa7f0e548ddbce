// taskhub-output-json: publishes a typed task output from a shell task. Installed next to
// taskhubctl (bin/), so that a shell task finds it on PATH.
//
//   ls /srv/in/*.csv | taskhub-output-json files      # ::set-output-json files=["a.csv","b.csv"]
//   curl -s http://cfg/ | taskhub-output-json --raw cfg # ::set-output-json cfg={...}
//
// Without --raw, every line of standard input (without its newline; a last line without one
// counts too) becomes a string of a JSON array; with --raw, standard input is one JSON document,
// checked as taskhubd checks a `::set-output-json` value (plugin_host/outputs.h) and printed
// compact. On any problem (a bad name, invalid UTF-8 on a line, input that is not one JSON value,
// a value over the 1 MiB limit) it prints nothing on standard output, says what is wrong on
// standard error and exits with status 1, so that `set -e` or `set -o pipefail` stops the task.
#include <boost/json.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

#include "plugin_host/outputs.h"

namespace {

namespace json = boost::json;
namespace ph = taskhub::plugin_host;

constexpr const char* kUsage =
    "usage: taskhub-output-json [--raw] NAME\n"
    "  Prints `::set-output-json NAME=JSON` for a TaskHub shell task to publish a typed output.\n"
    "  Without --raw: each line of standard input becomes a string of a JSON array.\n"
    "  --raw: standard input is one JSON document (array, object, number, ...), checked and\n"
    "         printed compact.\n"
    "  Limits: one value at most 1 MiB (1048576 bytes) of JSON; NAME is [A-Za-z_][A-Za-z0-9_]*.\n";

int fail(const std::string& message) {
    std::cerr << "taskhub-output-json: " << message << "\n";
    return 1;
}

// Reads standard input, at most limit + 1 bytes (more cannot be within the limit anyway).
bool readInput(std::string* out, size_t limit) {
    char buf[65536];
    while (out->size() <= limit) {
        const size_t n = std::fread(buf, 1, sizeof buf, stdin);
        out->append(buf, n);
        if (n < sizeof buf) return !std::ferror(stdin);
    }
    return true;
}

std::string overLimit(size_t bytes, bool at_least) {
    return std::string("the value is ") + (at_least ? "more than " : "") + std::to_string(bytes) +
           " bytes of JSON, over the limit of 1 MiB (1048576 bytes) for one JSON value";
}

} // namespace

int main(int argc, char** argv) {
    bool raw = false;
    std::string name;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            std::cout << kUsage;
            return 0;
        }
        if (arg == "--raw") {
            raw = true;
        } else if (!arg.empty() && arg[0] == '-') {
            return fail("unknown option '" + std::string(arg) + "'\n" + kUsage);
        } else if (name.empty()) {
            name = std::string(arg);
        } else {
            return fail("one output NAME only, found '" + name + "' and '" + std::string(arg) + "'\n" + kUsage);
        }
    }
    if (name.empty()) return fail(std::string("no output NAME given\n") + kUsage);
    if (!ph::isOutputName(name)) {
        return fail("invalid output name '" + name.substr(0, 64) +
                    "': a name starts with a letter or '_' and continues with letters, digits or '_'");
    }
    std::string input;
    if (!readInput(&input, ph::kMaxJsonOutputBytes)) return fail("cannot read standard input");

    std::string value;
    if (raw) {
        bool is_string = false;
        std::string checked, err;
        if (!ph::checkJsonValue(input, &is_string, &checked, &err)) {
            if (input.size() > ph::kMaxJsonOutputBytes) return fail(overLimit(ph::kMaxJsonOutputBytes, true));
            return fail("standard input " + err);
        }
        value = is_string ? json::serialize(json::string_view(checked)) : checked;
    } else {
        if (input.size() > ph::kMaxJsonOutputBytes) return fail(overLimit(ph::kMaxJsonOutputBytes, true));
        json::array lines;
        size_t start = 0, number = 0;
        while (start < input.size()) {
            size_t end = input.find('\n', start);
            if (end == std::string::npos) end = input.size();
            const std::string_view line(input.data() + start, end - start);
            ++number;
            if (auto bad = ph::firstInvalidUtf8(line)) {
                return fail("invalid UTF-8 on line " + std::to_string(number) + " at byte " + std::to_string(*bad + 1) +
                            " (a JSON string holds UTF-8 text only; use --raw with your own encoding, e.g. base64)");
            }
            lines.emplace_back(json::string_view(line));
            start = end + 1;
        }
        value = json::serialize(lines);
    }
    if (value.size() > ph::kMaxJsonOutputBytes) return fail(overLimit(value.size(), false));
    if (name.size() + value.size() > ph::kMaxAllOutputsBytes) {
        return fail("output '" + name + "' with its value is " + std::to_string(name.size() + value.size()) +
                    " bytes, over the limit of 1 MiB (1048576 bytes) for all outputs of an attempt");
    }
    std::cout << "::set-output-json " << name << "=" << value << "\n" << std::flush;
    return std::cout ? 0 : fail("cannot write standard output");
}
