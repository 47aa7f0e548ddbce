#include "expr/shell_context.h"

#include <taskhub/shell_quote.h>

#include <algorithm>

#include "expr/template.h"

namespace taskhub::expr {
namespace {

// The text as the shell will see it, with each reference as one item: a byte 0-255, or
// kRefBase + the reference's index.
constexpr int kRefBase = 256;

enum class Frame {
    List,       // commands: the whole text, a subshell
    CmdSubst,   // $( ... )
    Backquote,  // ` ... `
    Double,     // " ... "
    Single,     // ' ... '
    AnsiC,      // $' ... '
    Param,      // ${ ... }
    Arith,      // $(( ... )), (( ... )), $[ ... ]
    Comment,    // # ... up to the newline
};

struct State {
    explicit State(Frame k, int d = 0, char c = ')') : kind(k), depth(d), closer(c) {}
    Frame kind;
    int depth = 0;        // List/CmdSubst: open '('; Param: open '{'; Arith: open '(' or '['
    char closer = ')';    // Arith: ')' for (( )), ']' for $[ ]
    // List and CmdSubst: the word being read and what the current simple command is.
    std::string word;
    bool command_position = true;
    std::string command;  // the command's first word, once read
    bool in_dbracket = false;
};

struct HereDoc {
    std::string delimiter;
    bool strip_tabs = false;
};

bool isBlank(int c) { return c == ' ' || c == '\t'; }
bool isOperator(int c) { return c == ';' || c == '&' || c == '|' || c == '<' || c == '>' || c == '(' || c == ')'; }
bool isNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool isNameChar(char c) { return isNameStart(c) || (c >= '0' && c <= '9'); }

// Words after which the next word is still in command position: keywords, and the built-ins
// that run their first argument as the command (`command eval ...` is eval).
bool keepsCommandPosition(const std::string& w) {
    static const char* const kWords[] = {"if",   "then", "else", "elif", "do",      "while",   "until", "for",
                                         "!",    "{",    "time", "}",    "fi",      "done",    "esac",  "command",
                                         "exec", "builtin"};
    return std::any_of(std::begin(kWords), std::end(kWords), [&](const char* k) { return w == k; });
}

// A word as the shell sees it after quote removal, for recognising command names: `e"val"`,
// `'eval'` and `\eval` all run eval.
std::string withoutQuotes(const std::string& w) {
    std::string out;
    out.reserve(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
        if (w[i] == '\\' && i + 1 < w.size()) out += w[++i];
        else if (w[i] != '\'' && w[i] != '"') out += w[i];
    }
    return out;
}

// Builtins that run their arguments, or the file an argument names, as shell code.
bool runsArgumentsAsCode(const std::string& command) {
    return command == "eval" || command == "let" || command == "trap" || command == "source" || command == ".";
}

// NAME=... : an assignment before the command keeps the next word in command position.
bool isAssignment(const std::string& w) {
    if (w.empty() || !isNameStart(w[0])) return false;
    size_t i = 1;
    while (i < w.size() && isNameChar(w[i])) ++i;
    if (i < w.size() && w[i] == '[') return w.find("]=", i) != std::string::npos;
    return i < w.size() && w[i] == '=';
}

// NAME[ ... with no ']' yet: inside the subscript of an array assignment.
bool inSubscript(const std::string& w) {
    if (w.empty() || !isNameStart(w[0])) return false;
    size_t i = 1;
    while (i < w.size() && isNameChar(w[i])) ++i;
    return i < w.size() && w[i] == '[' && w.find(']', i) == std::string::npos;
}

class Scanner {
public:
    explicit Scanner(std::vector<int> s, size_t n_refs) : s_(std::move(s)), out_(n_refs, ShellContext::Bare) {}

    std::vector<ShellContext> run() {
        stack_.push_back(State{Frame::List});
        while (i_ < s_.size()) step();
        return out_;
    }

private:
    int at(size_t k) const { return k < s_.size() ? s_[k] : -1; }
    static bool isRef(int c) { return c >= kRefBase; }
    State& top() { return stack_.back(); }
    State* listFrame() {
        for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
            if (it->kind == Frame::List || it->kind == Frame::CmdSubst) return &*it;
        return nullptr;
    }

    void record(int item, ShellContext innermost) {
        ShellContext c = innermost;
        // The outermost unsafe frame decides: a quoted reference inside $(...) is still refused.
        for (const State& f : stack_) {
            std::optional<ShellContext> u;
            switch (f.kind) {
            case Frame::CmdSubst: u = ShellContext::CommandSubstitution; break;
            case Frame::Backquote: u = ShellContext::Backquote; break;
            case Frame::Param: u = ShellContext::ParameterExpansion; break;
            case Frame::Arith: u = ShellContext::Arithmetic; break;
            case Frame::Comment: u = ShellContext::Comment; break;
            case Frame::AnsiC: u = ShellContext::AnsiCQuoted; break;
            default: break;
            }
            if (u) {
                c = *u;
                break;
            }
        }
        if (isSafe(c)) {
            const State* list = listFrame();
            if (list != nullptr) {
                if (list->in_dbracket) c = ShellContext::DoubleBracket;
                else if (runsArgumentsAsCode(list->command)) c = ShellContext::CodeArgument;
                else if (list->command_position && inSubscript(list->word)) c = ShellContext::ArraySubscript;
            }
        }
        out_[static_cast<size_t>(item - kRefBase)] = c;
    }

    // The current word of the innermost List/CmdSubst frame ended.
    void endWord() {
        State* list = listFrame();
        if (list == nullptr || list->word.empty()) return;
        std::string w = std::move(list->word);
        list->word.clear();
        if (list->in_dbracket) {
            if (w == "]]") list->in_dbracket = false;
            return;
        }
        if (!list->command_position) return;
        if (isAssignment(w)) return;
        w = withoutQuotes(w);
        if (keepsCommandPosition(w)) return;
        if (w == "[[") list->in_dbracket = true;
        list->command = w;
        list->command_position = false;
    }

    void newCommand() {
        endWord();
        State* list = listFrame();
        if (list == nullptr || list->in_dbracket) return;
        list->command_position = true;
        list->command.clear();
    }

    void addToWord(int c) {
        State* list = listFrame();
        if (list != nullptr) list->word += isRef(c) ? '\x01' : static_cast<char>(c);
    }

    // At a newline of a List/CmdSubst frame: the bodies of the pending here-documents follow.
    void readHereDocBodies() {
        for (const HereDoc& h : pending_) {
            for (;;) {
                if (i_ >= s_.size()) return;
                size_t start = i_;
                while (i_ < s_.size() && s_[i_] != '\n') ++i_;
                size_t end = i_;
                if (i_ < s_.size()) ++i_; // the newline
                size_t k = start;
                if (h.strip_tabs) while (k < end && s_[k] == '\t') ++k;
                std::string line;
                bool has_ref = false;
                for (size_t j = k; j < end; ++j) {
                    if (isRef(s_[j])) {
                        out_[static_cast<size_t>(s_[j] - kRefBase)] = ShellContext::HereDocument;
                        has_ref = true;
                    } else {
                        line += static_cast<char>(s_[j]);
                    }
                }
                if (!has_ref && line == h.delimiter) break;
            }
        }
        pending_.clear();
    }

    // After "<<" or "<<-": the delimiter word, quotes removed. A reference in it is refused.
    void readHereDocDelimiter(bool strip_tabs) {
        while (i_ < s_.size() && isBlank(s_[i_])) ++i_;
        HereDoc h;
        h.strip_tabs = strip_tabs;
        int quote = 0;
        while (i_ < s_.size()) {
            int c = s_[i_];
            if (isRef(c)) {
                out_[static_cast<size_t>(c - kRefBase)] = ShellContext::HereDocument;
                ++i_;
                continue;
            }
            if (quote != 0) {
                if (c == quote) quote = 0;
                else h.delimiter += static_cast<char>(c);
                ++i_;
                continue;
            }
            if (isBlank(c) || c == '\n' || isOperator(c)) break;
            if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '\\' && i_ + 1 < s_.size()) {
                ++i_;
                if (isRef(s_[i_])) out_[static_cast<size_t>(s_[i_] - kRefBase)] = ShellContext::HereDocument;
                else h.delimiter += static_cast<char>(s_[i_]);
            } else {
                h.delimiter += static_cast<char>(c);
            }
            ++i_;
        }
        pending_.push_back(std::move(h));
    }

    // "$(", "$((", "${", "$[", "$'", "$\"" at i_ (which holds '$'); true when handled.
    bool dollar() {
        int n = at(i_ + 1);
        if (n == '(' && at(i_ + 2) == '(') {
            stack_.push_back(State{Frame::Arith, 0, ')'});
            i_ += 3;
        } else if (n == '(') {
            stack_.push_back(State{Frame::CmdSubst});
            i_ += 2;
        } else if (n == '{') {
            stack_.push_back(State{Frame::Param, 1});
            i_ += 2;
        } else if (n == '[') {
            stack_.push_back(State{Frame::Arith, 0, ']'});
            i_ += 2;
        } else if (n == '\'' && top().kind != Frame::Double) {
            stack_.push_back(State{Frame::AnsiC});
            i_ += 2;
        } else {
            return false;
        }
        return true;
    }

    void step() {
        const int c = s_[i_];
        State& f = top();
        switch (f.kind) {
        case Frame::Single:
            // Quoted text is part of the current word too (a command name may be quoted).
            addToWord(c);
            if (isRef(c)) record(c, ShellContext::SingleQuoted);
            else if (c == '\'') stack_.pop_back();
            ++i_;
            return;
        case Frame::AnsiC:
            if (isRef(c)) record(c, ShellContext::AnsiCQuoted);
            else if (c == '\\') ++i_;
            else if (c == '\'') stack_.pop_back();
            ++i_;
            return;
        case Frame::Comment:
            if (c == '\n') {
                stack_.pop_back(); // the newline ends the command in the enclosing frame
                return;
            }
            if (isRef(c)) record(c, ShellContext::Comment);
            ++i_;
            return;
        case Frame::Backquote:
            if (isRef(c)) record(c, ShellContext::Backquote);
            else if (c == '\\') {
                if (isRef(at(i_ + 1))) record(at(i_ + 1), ShellContext::Backquote);
                ++i_;
            } else if (c == '`') stack_.pop_back();
            ++i_;
            return;
        case Frame::Double:
            if (c != '`' && c != '$') addToWord(c);
            if (isRef(c)) {
                record(c, ShellContext::DoubleQuoted);
            } else if (c == '"') {
                stack_.pop_back();
            } else if (c == '\\') {
                if (isRef(at(i_ + 1))) record(at(i_ + 1), ShellContext::AfterBackslash);
                ++i_;
            } else if (c == '`') {
                stack_.push_back(State{Frame::Backquote});
            } else if (c == '$' && dollar()) {
                return;
            }
            ++i_;
            return;
        case Frame::Param:
        case Frame::Arith:
            if (isRef(c)) {
                record(c, f.kind == Frame::Param ? ShellContext::ParameterExpansion : ShellContext::Arithmetic);
            } else if (c == '\\') {
                ++i_;
            } else if (c == '\'' && f.kind == Frame::Param) {
                stack_.push_back(State{Frame::Single});
            } else if (c == '"') {
                stack_.push_back(State{Frame::Double});
            } else if (c == '`') {
                stack_.push_back(State{Frame::Backquote});
            } else if (c == '$' && dollar()) {
                return;
            } else if (f.kind == Frame::Param) {
                if (c == '{') ++f.depth;
                else if (c == '}' && --f.depth == 0) stack_.pop_back();
            } else if (c == (f.closer == ')' ? '(' : '[')) {
                ++f.depth;
            } else if (c == f.closer) {
                if (f.depth > 0) {
                    --f.depth;
                } else {
                    const bool double_paren = f.closer == ')' && at(i_ + 1) == ')';
                    stack_.pop_back(); // f is gone from here on
                    if (double_paren) ++i_;
                    addToWord('x');
                }
            }
            ++i_;
            return;
        case Frame::List:
        case Frame::CmdSubst:
            listStep(c);
            return;
        }
    }

    void listStep(int c) {
        State& f = top();
        if (isRef(c)) {
            const bool pattern = f.word.find_first_of("~[{") != std::string::npos;
            record(c, pattern ? ShellContext::BareInPattern : ShellContext::Bare);
            addToWord(c);
            ++i_;
            return;
        }
        switch (c) {
        case '\'':
            addToWord(c);
            stack_.push_back(State{Frame::Single});
            ++i_;
            return;
        case '"':
            addToWord(c);
            stack_.push_back(State{Frame::Double});
            ++i_;
            return;
        case '`':
            addToWord(c);
            stack_.push_back(State{Frame::Backquote});
            ++i_;
            return;
        case '\\':
            if (isRef(at(i_ + 1))) {
                record(at(i_ + 1), ShellContext::AfterBackslash);
                addToWord('x');
            } else if (at(i_ + 1) != '\n') {
                addToWord(c);
                if (at(i_ + 1) >= 0) addToWord(at(i_ + 1));
            }
            i_ += 2;
            return;
        case '$':
            addToWord(c);
            if (!dollar()) ++i_;
            return;
        case '#':
            if (f.word.empty()) {
                stack_.push_back(State{Frame::Comment});
            } else {
                addToWord(c);
            }
            ++i_;
            return;
        case '\n':
            newCommand();
            ++i_;
            readHereDocBodies();
            return;
        case ' ':
        case '\t':
            endWord();
            ++i_;
            return;
        default:
            break;
        }
        if (c == '<' && at(i_ + 1) == '<' && at(i_ + 2) != '<') {
            endWord();
            bool strip = at(i_ + 2) == '-';
            i_ += strip ? 3 : 2;
            readHereDocDelimiter(strip);
            return;
        }
        if (c == '<' && at(i_ + 1) == '<') { // here-string "<<<": an ordinary word follows
            endWord();
            i_ += 3;
            return;
        }
        if (c == '(' && at(i_ + 1) == '(' && f.word.empty() && f.command_position && !f.in_dbracket) {
            stack_.push_back(State{Frame::Arith, 0, ')'});
            i_ += 2;
            return;
        }
        if (c == '(') {
            if (f.in_dbracket) {
                endWord();
            } else {
                ++f.depth;
                newCommand();
            }
            ++i_;
            return;
        }
        if (c == ')') {
            if (f.in_dbracket) {
                endWord();
            } else if (f.depth > 0) {
                --f.depth;
                newCommand();
            } else if (f.kind == Frame::CmdSubst) {
                endWord();
                stack_.pop_back();
                addToWord('x');
            } else {
                newCommand();
            }
            ++i_;
            return;
        }
        if (c == ';' || c == '&' || c == '|') {
            if (f.in_dbracket) endWord();
            else newCommand();
            ++i_;
            return;
        }
        if (c == '<' || c == '>') {
            endWord();
            ++i_;
            return;
        }
        addToWord(c);
        ++i_;
    }

    std::vector<int> s_;
    std::vector<ShellContext> out_;
    std::vector<State> stack_;
    std::vector<HereDoc> pending_;
    size_t i_ = 0;
};

} // namespace

bool isSafe(ShellContext c) {
    return c == ShellContext::Bare || c == ShellContext::BareInPattern || c == ShellContext::SingleQuoted ||
           c == ShellContext::DoubleQuoted;
}

const char* describe(ShellContext c) {
    switch (c) {
    case ShellContext::Bare: return "a bare word";
    case ShellContext::BareInPattern: return "a bare word with ~, [ or {";
    case ShellContext::SingleQuoted: return "inside '...'";
    case ShellContext::DoubleQuoted: return "inside \"...\"";
    case ShellContext::CommandSubstitution: return "inside a command substitution $(...)";
    case ShellContext::Backquote: return "inside a command substitution `...`";
    case ShellContext::HereDocument: return "inside a here-document (<<)";
    case ShellContext::Arithmetic: return "inside an arithmetic expression ($((...)), ((...)) or $[...])";
    case ShellContext::ParameterExpansion: return "inside a parameter expansion ${...}";
    case ShellContext::Comment: return "inside a comment";
    case ShellContext::AfterBackslash: return "right after a backslash";
    case ShellContext::AnsiCQuoted: return "inside $'...'";
    case ShellContext::DoubleBracket: return "inside [[ ... ]]";
    case ShellContext::ArraySubscript: return "inside an array subscript";
    case ShellContext::CodeArgument: return "in an argument of eval, let, trap, source or .";
    }
    return "in an unknown context";
}

std::string refusal(ShellContext c, std::string_view shown, const std::string& env_hint) {
    std::string why;
    std::string instead;
    const std::string ref(shown);
    switch (c) {
    case ShellContext::CommandSubstitution:
    case ShellContext::Backquote:
        why = "the value would be part of a nested command";
        instead = "move the template out of the substitution: assign it first (v=" + ref +
                  ") and use \"$v\" inside";
        break;
    case ShellContext::HereDocument:
        why = "a here-document cannot quote a value";
        instead = "pipe it instead, e.g. printf '%s\\n' " + ref + " | cmd";
        break;
    case ShellContext::Arithmetic:
    case ShellContext::DoubleBracket:
    case ShellContext::ArraySubscript:
        why = "the shell evaluates the value as an arithmetic expression, which can run commands";
        instead = "assign it first (v=" + ref + "), check that it is a number (case $v in ''|*[!0-9]*) exit 2;; "
                  "esac) and use $v";
        if (c == ShellContext::DoubleBracket) instead += ", or compare with [ ... ]";
        break;
    case ShellContext::ParameterExpansion:
        why = "a value cannot be quoted in a variable name or the word of a ${...} expansion";
        instead = "assign it first (v=" + ref + ") and use \"${v}\"";
        break;
    case ShellContext::Comment:
        why = "a value with a newline would end the comment";
        instead = "remove the template from the comment";
        break;
    case ShellContext::AfterBackslash:
        why = "the backslash would escape the quoting of the value";
        instead = "remove the backslash";
        break;
    case ShellContext::AnsiCQuoted:
        why = "$'...' interprets backslash escapes in the value";
        instead = "put the template outside the $'...' string";
        break;
    case ShellContext::CodeArgument:
        why = "eval, let, trap, source and . run their arguments (or the file named) as shell code";
        instead = "pass the value as data, e.g. as \"$1\" of a function or script";
        break;
    default:
        break;
    }
    std::string msg = ref + " is " + describe(c) + ", where a value cannot be made safe (" + why + "); " + instead;
    if (!env_hint.empty()) msg += ", or use \"$" + env_hint + "\" from the environment";
    return msg;
}

std::vector<ShellContext> shellContexts(const Template& t) {
    const auto literals = t.literals();
    std::vector<int> items;
    for (size_t k = 0; k < literals.size(); ++k) {
        for (char ch : literals[k]) items.push_back(static_cast<unsigned char>(ch));
        if (k < t.refs().size()) items.push_back(kRefBase + static_cast<int>(k));
    }
    return Scanner(std::move(items), t.refs().size()).run();
}

std::optional<std::string> escapeForShell(ShellContext c, std::string_view value) {
    size_t need = th_shell_quote(value.data(), value.size(), nullptr, 0);
    if (need == TH_SHELL_QUOTE_NUL) return std::nullopt;
    std::string quoted(need, '\0');
    th_shell_quote(value.data(), value.size(), quoted.data(), need + 1);
    // A plain value is its own quoted form (shell_quote.h); where it could join the author's
    // pattern, quote it anyway (a plain value holds no quote to escape).
    if (c == ShellContext::BareInPattern && !quoted.starts_with('\'')) quoted = "'" + quoted + "'";
    switch (c) {
    case ShellContext::SingleQuoted: return "'" + quoted + "'";
    case ShellContext::DoubleQuoted: return "\"" + quoted + "\"";
    default: return quoted;
    }
}

} // namespace taskhub::expr
