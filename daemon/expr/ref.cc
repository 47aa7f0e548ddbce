#include "expr/ref.h"

#include <cctype>

#include "expr/ref_parser.h"

namespace taskhub::expr {

namespace {

bool isNameStart(char ch) { return std::isalpha(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isNameChar(char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isIdChar(char ch) { return isNameChar(ch) || ch == '-'; }

} // namespace

std::string toString(const std::vector<PathStep>& path) {
    std::string out;
    for (const auto& step : path) {
        switch (step.kind) {
        case PathStep::Key: out += "." + step.key; break;
        case PathStep::Index: out += "[" + std::to_string(step.index) + "]"; break;
        case PathStep::Length: out += ".length"; break;
        }
    }
    return out;
}

std::string toString(const Ref& ref) {
    switch (ref.kind) {
    case Ref::Param: return "params." + ref.name + toString(ref.path);
    case Ref::Output: return "tasks." + ref.task + ".outputs." + ref.name + toString(ref.path);
    case Ref::TaskState: return "tasks." + ref.task + ".state";
    case Ref::Item: return "item" + toString(ref.path);
    case Ref::Index: return "index";
    }
    return "?";
}

std::string refPathError(const Ref& ref, const std::string& why) {
    const size_t colon = std::min(why.find(": "), why.size());
    return "${" + toString(Ref{ref.kind, ref.task, ref.name, {}}) + why.substr(0, colon) + "}" +
           why.substr(colon);
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

// Parses the path steps at text[pos...] into *path; returns the index after them, or sets
// *error and *error_pos. `shown` is the reference so far, for messages.
static size_t parsePath(std::string_view text, size_t pos, std::string shown, std::vector<PathStep>* path,
                 std::string* error, size_t* error_pos) {
    auto fail = [&](size_t where, std::string message) {
        *error_pos = where;
        *error = std::move(message);
        return where;
    };
    while (pos < text.size() && (text[pos] == '.' || text[pos] == '[')) {
        if (!path->empty() && path->back().kind == PathStep::Length) {
            return fail(pos, "'.length' must be the last step of '" + shown + "' (it is a number)");
        }
        if (text[pos] == '[') {
            size_t end = pos + 1;
            uint64_t n = 0;
            while (end < text.size() && end < pos + 1 + 18 && text[end] >= '0' && text[end] <= '9') {
                n = n * 10 + static_cast<uint64_t>(text[end++] - '0');
            }
            if (end == pos + 1 || end >= text.size() || text[end] != ']') {
                return fail(end, "expected an array index like [0] after '" + shown + "', found " +
                                     describe(text, end, "the end of the text") +
                                     " (an index is a non-negative decimal of at most 18 digits)");
            }
            path->push_back({PathStep::Index, "", n});
            shown += "[" + std::to_string(n) + "]";
            pos = end + 1;
            continue;
        }
        const size_t start = pos + 1;
        size_t end = start;
        while (end < text.size() && isNameChar(text[end])) ++end;
        const std::string key(text.substr(start, end - start));
        if (!isValidName(key)) {
            return fail(start, "expected a key or 'length' after '" + shown + ".', found " +
                                   (key.empty() ? describe(text, start, "the end of the text") : "'" + key + "'") +
                                   " (a key is letters, digits and '_', not starting with a digit; write [N] "
                                   "for an array element)");
        }
        if (key == "length") {
            path->push_back({PathStep::Length, "", 0});
        } else {
            path->push_back({PathStep::Key, key, 0});
        }
        shown += "." + key;
        pos = end;
    }
    return pos;
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

    auto withPath = [&](Ref ref, size_t from) {
        out.end = parsePath(text, from, toString(ref), &ref.path, &out.error, &out.error_pos);
        if (!out.error.empty()) return out;
        out.ok = true;
        out.ref = std::move(ref);
        return out;
    };

    size_t end = word(pos, isNameChar);
    const std::string head(text.substr(pos, end - pos));
    if (head == "item") return withPath(Ref{Ref::Item, "", "", {}}, end);
    if (head == "index") {
        if (end < text.size() && (text[end] == '.' || text[end] == '[')) {
            return fail(end, "'index' is a number and takes no path (use item" + std::string(1, text[end]) +
                                 "... for the item's parts)");
        }
        out.ok = true;
        out.ref = {Ref::Index, "", "", {}};
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
        return withPath(Ref{Ref::Param, "", name, {}}, nameEnd);
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
        out.ref = {Ref::TaskState, id, "", {}};
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
    return withPath(Ref{Ref::Output, id, name, {}}, nameEnd);
}

} // namespace detail

} // namespace taskhub::expr
