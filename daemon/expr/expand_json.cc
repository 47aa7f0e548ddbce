// Boost.JSON stays in this file: the expr headers are included by config and the engine.
#include <boost/json.hpp>

#include <stdexcept>

#include "expr/template.h"

namespace taskhub::expr {

namespace {

void expandValue(boost::json::value& v, const Lookup& lookup) {
    if (auto* s = v.if_string()) {
        std::string_view text(s->data(), s->size());
        if (text.find("${") == std::string_view::npos) return;
        auto parsed = Template::parse(text);
        if (auto* t = std::get_if<Template>(&parsed)) *s = t->expand(lookup);
    } else if (auto* a = v.if_array()) {
        for (auto& e : *a) expandValue(e, lookup);
    } else if (auto* o = v.if_object()) {
        for (auto& kv : *o) expandValue(kv.value(), lookup);
    }
}

} // namespace

std::string expandJsonStrings(std::string_view json, const Lookup& lookup) {
    if (json.find("${") == std::string_view::npos) return std::string(json);
    boost::json::error_code ec;
    boost::json::value v = boost::json::parse(json, ec);
    if (ec || !v.is_object()) {
        throw std::invalid_argument("expandJsonStrings: not a JSON object: " + std::string(json.substr(0, 80)));
    }
    expandValue(v, lookup);
    return boost::json::serialize(v);
}

} // namespace taskhub::expr
