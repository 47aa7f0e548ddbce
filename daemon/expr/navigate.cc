// Paths into JSON values (ref.h navigate()). Boost.JSON stays in this file and expand_json.cc.
#include <boost/json.hpp>

#include "expr/ref.h"
#include "model/json_text.h"

namespace taskhub::expr {

namespace {

// Characters of UTF-8 text: bytes that do not continue a sequence.
size_t characters(std::string_view text) {
    size_t n = 0;
    for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

// "an array of 3", "an object with keys a, b, c", "a string of 4 characters", "the number 7"...
std::string describe(const boost::json::value& v) {
    switch (v.kind()) {
    case boost::json::kind::array: return "an array of " + std::to_string(v.get_array().size());
    case boost::json::kind::object: {
        const auto& o = v.get_object();
        if (o.empty()) return "an empty object";
        std::string keys;
        size_t shown = 0;
        for (const auto& kv : o) {
            if (shown == 8) {
                keys += ", ... (" + std::to_string(o.size()) + " keys)";
                break;
            }
            keys += (shown++ == 0 ? "" : ", ") + std::string(kv.key().substr(0, 40));
        }
        return "an object with keys " + keys;
    }
    case boost::json::kind::string: {
        return "a string of " + std::to_string(characters(v.get_string())) + " characters";
    }
    case boost::json::kind::null: return "null";
    case boost::json::kind::bool_: return std::string("the boolean ") + (v.get_bool() ? "true" : "false");
    default: return "the number " + model::jsonText(v);
    }
}

std::string render(const boost::json::value& v) {
    if (v.is_string()) return std::string(v.get_string());
    return model::jsonText(v);
}

} // namespace

std::optional<std::string> navigate(std::string_view json_text, const std::vector<PathStep>& path,
                                    std::string* err) {
    boost::json::parse_options opts;
    opts.max_depth = 1000; // published values were checked for 64; a param may nest deeper
    boost::json::error_code ec;
    const boost::json::value root = boost::json::parse(json_text, ec, {}, opts);
    if (ec) {
        *err = ": not JSON text (" + ec.message() + "), so no path can be followed into it";
        return std::nullopt;
    }
    const boost::json::value* v = &root;
    std::vector<PathStep> walked;
    for (const auto& step : path) {
        walked.push_back(step);
        auto fail = [&](const std::string& why) -> std::optional<std::string> {
            *err = toString(walked) + ": " + why;
            return std::nullopt;
        };
        switch (step.kind) {
        case PathStep::Length:
            if (v->is_array()) return std::to_string(v->get_array().size());
            if (v->is_object()) return std::to_string(v->get_object().size());
            if (v->is_string()) return std::to_string(characters(v->get_string()));
            return fail(describe(*v) + " has no length (only an array, object or string has one)");
        case PathStep::Index: {
            const auto* a = v->if_array();
            if (a == nullptr) return fail("not an array (it is " + describe(*v) + ")");
            if (step.index >= a->size()) {
                return fail("index out of range (array of " + std::to_string(a->size()) + ")");
            }
            v = &(*a)[static_cast<size_t>(step.index)];
            break;
        }
        case PathStep::Key: {
            const auto* o = v->if_object();
            if (o == nullptr) return fail("not an object (it is " + describe(*v) + ")");
            const auto* next = o->if_contains(step.key);
            if (next == nullptr) return fail("no key '" + step.key + "' (" + describe(*v) + ")");
            v = next;
            break;
        }
        }
    }
    return render(*v);
}

std::optional<std::string> navigateText(std::string_view text, const std::vector<PathStep>& path,
                                        std::string* err) {
    if (path.empty()) return std::string(text);
    if (path.size() == 1 && path[0].kind == PathStep::Length) return std::to_string(characters(text));
    *err = toString({path[0]}) + ": a plain text value has no " +
           (path[0].kind == PathStep::Index ? "elements" : "fields") +
           "; only .length applies (publish it with ::set-output-json to read into it)";
    return std::nullopt;
}

} // namespace taskhub::expr
