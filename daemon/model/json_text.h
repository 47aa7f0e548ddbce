// The one compact text of a JSON value that TaskHub stores and shows for typed task outputs:
// no whitespace, strings escaped as Boost.JSON does, integers as integers and other numbers in
// their shortest round-trip form ("1.5", "1e+300"; Boost.JSON alone writes "1.5E0"). Parsing the
// text and writing it again gives the same text, so a typed output reads back from the store
// exactly as it was published.
//
// Include only from .cc files that already use Boost.JSON (it is a heavy header).
#ifndef TASKHUB_MODEL_JSON_TEXT_H
#define TASKHUB_MODEL_JSON_TEXT_H

#include <boost/json.hpp>

#include <charconv>
#include <cmath>
#include <string>

namespace taskhub::model {

inline void appendJsonText(std::string& out, const boost::json::value& v) {
    switch (v.kind()) {
    case boost::json::kind::array: {
        out += '[';
        bool first = true;
        for (const auto& e : v.get_array()) {
            if (!first) out += ',';
            first = false;
            appendJsonText(out, e);
        }
        out += ']';
        return;
    }
    case boost::json::kind::object: {
        out += '{';
        bool first = true;
        for (const auto& kv : v.get_object()) {
            if (!first) out += ',';
            first = false;
            out += boost::json::serialize(kv.key());
            out += ':';
            appendJsonText(out, kv.value());
        }
        out += '}';
        return;
    }
    case boost::json::kind::double_: {
        const double d = v.get_double();
        char buf[32];
        auto r = std::isfinite(d) ? std::to_chars(buf, buf + sizeof buf, d) : std::to_chars_result{buf, std::errc()};
        if (r.ptr == buf) {
            out += "null"; // never from a parsed text: Boost.JSON refuses numbers out of range
        } else {
            out.append(buf, r.ptr);
        }
        return;
    }
    default: out += boost::json::serialize(v); return;
    }
}

inline std::string jsonText(const boost::json::value& v) {
    std::string out;
    appendJsonText(out, v);
    return out;
}

} // namespace taskhub::model

#endif // TASKHUB_MODEL_JSON_TEXT_H
