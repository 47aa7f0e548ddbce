#include "expr/ref.h"

#include <cctype>

#include "expr/ref_parser.h"

namespace taskhub::expr {

namespace {

bool isNameStart(char ch) { return std::isalpha(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isNameChar(char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isIdChar(char ch) { return isNameChar(ch) || ch == '-'; }

} // namespace

std::string toString(const Ref& ref) {
    switch (ref.kind) {
    case Ref::Param: return "params." + ref.name;
    case Ref::Output: return "tasks." + ref.task + ".outputs." + ref.name;
    case Ref::TaskState: return "tasks." + ref.task + ".state";
    case Ref::Item: return "item";
    case Ref::Index: return "index";
    }
    return "?";
}

bool isValidName(std::string_view name) {
    if (name.empty() || !isNameStart(name[0])) return false;
    for (char ch : name) {
        if (!isNameChar(ch)) return false;
    }
    return true;
}

namespace detail {

std::string at(size_t index, const std::string& message) {
    return "column " + std::to_string(index + 1) + ": " + message;
}

std::string describe(std::string_view text, size_t index, const char* end_name) {
    if (index >= text.size()) return end_name;
    return "'" + std::string(1, text[index]) + "'";
}

RefParse parseRef(std::string_view text, size_t pos, bool allow_state, const std::string& expected) {
    RefParse out;
    auto fail = [&](size_t where, std::string message) {
        out.error_pos = where;
        out.error = std::move(message);
        return out;
    };
    auto word = [&](size_t from, auto accept) {
        size_t end = from;
        while (end < text.size() && accept(text[end])) ++end;
        return end;
    };
    auto expectDot = [&](size_t where, const std::string& after) {
        return where < text.size() && text[where] == '.'
                   ? std::string()
                   : "expected '.' after '" + after + "', found " +
                         describe(text, where, "the end of the text") + " (expected " + expected + ")";
    };

    size_t end = word(pos, isNameChar);
    const std::string head(text.substr(pos, end - pos));
    if (head == "item" || head == "index") {
        out.ok = true;
        out.ref = {head == "item" ? Ref::Item : Ref::Index, "", ""};
        out.end = end;
        return out;
    }
    if (head != "params" && head != "tasks") {
        if (head.empty()) {
            return fail(pos, "expected a reference, found " + describe(text, pos, "the end of the text") +
                                 " (expected " + expected + ")");
        }
        return fail(pos, "unknown reference '" + head + "' (expected " + expected + ")");
    }
    if (auto e = expectDot(end, head); !e.empty()) return fail(end, e);

    if (head == "params") {
        size_t nameStart = end + 1;
        size_t nameEnd = word(nameStart, isNameChar);
        std::string name(text.substr(nameStart, nameEnd - nameStart));
        if (!isValidName(name)) {
            return fail(nameStart, "expected a param name after 'params.', found " +
                                       (name.empty() ? describe(text, nameStart, "the end of the text")
                                                     : "'" + name + "'") +
                                       " (a name is letters, digits and '_', not starting with a digit)");
        }
        out.ok = true;
        out.ref = {Ref::Param, "", name};
        out.end = nameEnd;
        return out;
    }

    size_t idStart = end + 1;
    size_t idEnd = word(idStart, isIdChar);
    if (idEnd == idStart) {
        return fail(idStart, "expected a task id after 'tasks.', found " +
                                 describe(text, idStart, "the end of the text") + " (expected " + expected + ")");
    }
    std::string id(text.substr(idStart, idEnd - idStart));
    const std::string prefix = "tasks." + id;
    if (auto e = expectDot(idEnd, prefix); !e.empty()) return fail(idEnd, e);
    size_t fieldStart = idEnd + 1;
    size_t fieldEnd = word(fieldStart, isNameChar);
    std::string field(text.substr(fieldStart, fieldEnd - fieldStart));
    if (field == "state" && allow_state) {
        out.ok = true;
        out.ref = {Ref::TaskState, id, ""};
        out.end = fieldEnd;
        return out;
    }
    if (field != "outputs") {
        return fail(fieldStart, "expected " + std::string(allow_state ? "'outputs' or 'state'" : "'outputs'") +
                                    " after '" + prefix + ".', found " +
                                    (field.empty() ? describe(text, fieldStart, "the end of the text")
                                                   : "'" + field + "'") +
                                    " (expected " + expected + ")");
    }
    if (auto e = expectDot(fieldEnd, prefix + ".outputs"); !e.empty()) return fail(fieldEnd, e);
    size_t nameStart = fieldEnd + 1;
    size_t nameEnd = word(nameStart, isNameChar);
    std::string name(text.substr(nameStart, nameEnd - nameStart));
    if (!isValidName(name)) {
        return fail(nameStart, "expected an output name after '" + prefix + ".outputs.', found " +
                                   (name.empty() ? describe(text, nameStart, "the end of the text")
                                                 : "'" + name + "'") +
                                   " (a name is letters, digits and '_', not starting with a digit)");
    }
    out.ok = true;
    out.ref = {Ref::Output, id, name};
    out.end = nameEnd;
    return out;
}

} // namespace detail

} // namespace taskhub::expr
