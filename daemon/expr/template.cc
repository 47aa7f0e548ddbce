#include "expr/template.h"

#include "expr/ref_parser.h"

namespace taskhub::expr {

using detail::at;

std::optional<Template> Template::parse(std::string_view text, std::string* err) {
    static const std::string kExpected = "${params.NAME} or ${tasks.ID.outputs.NAME}";
    auto fail = [err](std::string message) -> std::optional<Template> {
        *err = std::move(message);
        return std::nullopt;
    };
    Template t;
    std::string literal;
    size_t i = 0;
    while (i < text.size()) {
        if (text.compare(i, 3, "$${") == 0) {
            literal += "${";
            t.escaped_ = true;
            i += 3;
            continue;
        }
        if (text.compare(i, 2, "${") != 0) {
            literal += text[i++];
            continue;
        }
        const size_t open = i;
        auto ref = detail::parseRef(text, i + 2, false, kExpected);
        if (!ref.ok) {
            if (ref.error_pos == i + 2 && i + 2 < text.size() && text[i + 2] == '}') {
                return fail(at(open, "empty reference '${}' (expected " + kExpected + ")"));
            }
            return fail(at(ref.error_pos, ref.error));
        }
        if (ref.end >= text.size()) {
            return fail(at(open, "'${' is not closed (expected '}' after the reference; write '$${' for a "
                                 "literal '${')"));
        }
        if (text[ref.end] != '}') {
            return fail(at(ref.end, "unexpected '" + std::string(1, text[ref.end]) + "' after '${" +
                                        toString(ref.ref) + "' (expected '}')"));
        }
        t.parts_.push_back({std::move(literal), static_cast<int>(t.refs_.size())});
        literal.clear();
        t.refs_.push_back(std::move(ref.ref));
        i = ref.end + 1;
    }
    t.parts_.push_back({std::move(literal), -1});
    return t;
}

std::string Template::expand(const Lookup& lookup) const {
    std::string out;
    for (const auto& part : parts_) {
        out += part.literal;
        if (part.ref >= 0) {
            if (auto value = lookup(refs_[static_cast<size_t>(part.ref)])) out += *value;
        }
    }
    return out;
}

std::optional<std::string> Template::expand(const Lookup& lookup, const Escape& escape, size_t* failed_ref) const {
    std::string out;
    for (const auto& part : parts_) {
        out += part.literal;
        if (part.ref < 0) continue;
        const size_t index = static_cast<size_t>(part.ref);
        auto escaped = escape(index, lookup(refs_[index]).value_or(""));
        if (!escaped) {
            if (failed_ref != nullptr) *failed_ref = index;
            return std::nullopt;
        }
        out += *escaped;
    }
    return out;
}

std::vector<std::string_view> Template::literals() const {
    std::vector<std::string_view> out;
    out.reserve(parts_.size());
    for (const auto& part : parts_) out.emplace_back(part.literal);
    return out;
}

} // namespace taskhub::expr
