#include "expr/condition.h"

#include <cctype>
#include <charconv>

#include "expr/ref_parser.h"

namespace taskhub::expr {

using detail::at;

namespace {

const char* const kValueForms =
    "params.NAME, tasks.ID.outputs.NAME, tasks.ID.state, a quoted string, a number, true, false or '('";

struct Token {
    enum Kind { End, Or, And, Not, Cmp, LParen, RParen, Value, RefTok } kind = End;
    size_t pos = 0;
    std::string src;  // as written, for messages
    std::string text; // Value: the literal's value
    Ref ref;          // RefTok
    int cmp = 0;      // Cmp: index into kCmpOps
};

const char* const kCmpOps[] = {"==", "!=", "<=", ">=", "<", ">"};

bool isWordStart(char ch) { return std::isalpha(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isWordChar(char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; }
bool isDigit(char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; }

// -?digits(.digits)?
bool parseNumber(std::string_view s, double* out) {
    size_t i = 0;
    if (i < s.size() && s[i] == '-') ++i;
    const size_t digits = i;
    while (i < s.size() && isDigit(s[i])) ++i;
    if (i == digits) return false;
    if (i < s.size() && s[i] == '.') {
        const size_t frac = ++i;
        while (i < s.size() && isDigit(s[i])) ++i;
        if (i == frac) return false;
    }
    if (i != s.size()) return false;
    auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
    return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Reads tokens; a token that cannot be read sets *err (the first error only) and ends the
// text: End from then on.
class Lexer {
public:
    Lexer(std::string_view text, std::string* err) : text_(text), err_(err) {}

    // The first error wins; the rest of the text is not read.
    Token fail(std::string message) {
        if (err_->empty()) *err_ = std::move(message);
        pos_ = text_.size();
        Token t;
        t.pos = pos_;
        return t;
    }

    Token next() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
        Token t;
        t.pos = pos_;
        if (pos_ >= text_.size()) return t;
        const char ch = text_[pos_];
        auto two = [&](const char* op) { return text_.compare(pos_, 2, op) == 0; };
        auto punct = [&](Token::Kind kind, size_t len) {
            t.kind = kind;
            t.src = std::string(text_.substr(pos_, len));
            pos_ += len;
            return t;
        };
        if (two("||")) return punct(Token::Or, 2);
        if (two("&&")) return punct(Token::And, 2);
        for (int i = 0; i < 6; ++i) {
            const std::string_view op = kCmpOps[i];
            if (text_.compare(pos_, op.size(), op) == 0) {
                t.cmp = i;
                return punct(Token::Cmp, op.size());
            }
        }
        if (ch == '!') return punct(Token::Not, 1);
        if (ch == '(') return punct(Token::LParen, 1);
        if (ch == ')') return punct(Token::RParen, 1);
        if (ch == '|') return fail(at(pos_, "'|' is not an operator (expected '||')"));
        if (ch == '&') return fail(at(pos_, "'&' is not an operator (expected '&&')"));
        if (ch == '=') return fail(at(pos_, "'=' is not an operator (expected '==')"));
        if (ch == '\'' || ch == '"') return quoted(t);
        if (ch == '-' || isDigit(ch)) return number(t);
        if (isWordStart(ch)) return word(t);
        return fail(at(pos_, "unexpected character '" + std::string(1, ch) +
                                 "' (expected a value, an operator or a parenthesis)"));
    }

private:
    Token quoted(Token& t) {
        const char quote = text_[pos_];
        size_t i = pos_ + 1;
        while (i < text_.size() && text_[i] != quote) {
            if (text_[i] == '\\' && i + 1 < text_.size()) ++i;
            t.text += text_[i++];
        }
        if (i >= text_.size()) {
            return fail(at(pos_, "quoted string is not closed (expected a closing " + std::string(1, quote) + ")"));
        }
        t.kind = Token::Value;
        t.src = std::string(text_.substr(pos_, i + 1 - pos_));
        pos_ = i + 1;
        return t;
    }

    Token number(Token& t) {
        size_t i = pos_;
        if (text_[i] == '-') ++i;
        while (i < text_.size() && (isDigit(text_[i]) || text_[i] == '.')) ++i;
        std::string_view src = text_.substr(pos_, i - pos_);
        double ignored = 0;
        if (!parseNumber(src, &ignored) || (i < text_.size() && isWordChar(text_[i]))) {
            return fail(at(pos_, "invalid number '" + std::string(src) +
                                     "' (expected digits with an optional '-' and fraction, like 3, -1 or 2.5)"));
        }
        t.kind = Token::Value;
        t.src = t.text = std::string(src);
        pos_ = i;
        return t;
    }

    Token word(Token& t) {
        size_t end = pos_;
        while (end < text_.size() && isWordChar(text_[end])) ++end;
        const std::string head(text_.substr(pos_, end - pos_));
        if (head == "true" || head == "false") {
            t.kind = Token::Value;
            t.src = t.text = head;
            pos_ = end;
            return t;
        }
        if (head != "params" && head != "tasks" && head != "item" && head != "index") {
            return fail(at(pos_, "unknown name '" + head + "' (expected " + kValueForms +
                                     "; quote text, like '" + head + "')"));
        }
        auto ref = detail::parseRef(text_, pos_, true, "params.NAME, tasks.ID.outputs.NAME or tasks.ID.state");
        if (!ref.ok) return fail(at(ref.error_pos, ref.error));
        if (ref.end < text_.size() && (text_[ref.end] == '.' || text_[ref.end] == '-')) {
            return fail(at(ref.end, "unexpected '" + std::string(1, text_[ref.end]) + "' after '" +
                                        toString(ref.ref) +
                                        "' (expected params.NAME, tasks.ID.outputs.NAME or tasks.ID.state)"));
        }
        t.kind = Token::RefTok;
        t.ref = ref.ref;
        t.src = toString(ref.ref);
        pos_ = ref.end;
        return t;
    }

    std::string_view text_;
    std::string* err_;
    size_t pos_ = 0;
};

std::string describe(const Token& t) {
    return t.kind == Token::End ? "the end of the condition" : "'" + t.src + "'";
}

} // namespace

// Recursive descent. The first error sets *err and ends the input (fail()), so every loop ends
// and the result is discarded.
class Condition::Parser {
public:
    Parser(std::string_view text, Condition& c, std::string* err) : lexer_(text, err), c_(c) { advance(); }

    size_t parseAll() {
        size_t n = parseOr();
        if (tok_.kind != Token::End) {
            return fail(at(tok_.pos, "expected an operator (&&, ||, ==, !=, <, <=, >, >=) or the end of the "
                                     "condition, found " + describe(tok_)));
        }
        return n;
    }

private:
    void advance() { tok_ = lexer_.next(); }

    size_t fail(std::string message) {
        tok_ = lexer_.fail(std::move(message));
        return 0;
    }

    size_t add(Node n) {
        c_.nodes_.push_back(std::move(n));
        return c_.nodes_.size() - 1;
    }
    size_t binary(Op op, size_t lhs, size_t rhs) {
        Node n;
        n.op = op;
        n.lhs = lhs;
        n.rhs = rhs;
        return add(std::move(n));
    }

    size_t parseOr() {
        size_t n = parseAnd();
        while (tok_.kind == Token::Or) {
            advance();
            n = binary(Op::Or, n, parseAnd());
        }
        return n;
    }

    size_t parseAnd() {
        size_t n = parseUnary();
        while (tok_.kind == Token::And) {
            advance();
            n = binary(Op::And, n, parseUnary());
        }
        return n;
    }

    size_t parseUnary() {
        if (tok_.kind == Token::Not) {
            advance();
            return binary(Op::Not, parseUnary(), 0);
        }
        return parseCmp();
    }

    size_t parseCmp() {
        size_t lhs = parseOperand();
        if (tok_.kind != Token::Cmp) return lhs;
        static const Op ops[] = {Op::Eq, Op::Ne, Op::Le, Op::Ge, Op::Lt, Op::Gt};
        const Op op = ops[tok_.cmp];
        advance();
        size_t n = binary(op, lhs, parseOperand());
        if (tok_.kind == Token::Cmp) {
            return fail(at(tok_.pos, "comparisons cannot be chained, found " + describe(tok_) +
                                         " after a comparison (use parentheses, e.g. (a == b) == c)"));
        }
        return n;
    }

    size_t parseOperand() {
        Token t = tok_;
        switch (t.kind) {
        case Token::Value: {
            advance();
            Node n;
            n.op = Op::Literal;
            n.text = std::move(t.text);
            return add(std::move(n));
        }
        case Token::RefTok: {
            advance();
            Node n;
            n.op = Op::Ref;
            n.ref = c_.refs_.size();
            c_.refs_.push_back(std::move(t.ref));
            return add(std::move(n));
        }
        case Token::LParen: {
            advance();
            size_t n = parseOr();
            if (tok_.kind != Token::RParen) {
                return fail(at(tok_.pos, "expected ')' to close the '(' at column " + std::to_string(t.pos + 1) +
                                             ", found " + describe(tok_)));
            }
            advance();
            return n;
        }
        default:
            return fail(at(t.pos, std::string("expected a value (") + kValueForms + "), found " + describe(t)));
        }
    }

    Lexer lexer_;
    Condition& c_;
    Token tok_;
};

std::optional<Condition> Condition::parse(std::string_view text, std::string* err) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        *err = at(0, "the condition is empty (expected e.g. params.region == 'eu')");
        return std::nullopt;
    }
    Condition c;
    std::string error;
    Parser p(text, c, &error);
    c.root_ = p.parseAll();
    if (!error.empty()) {
        *err = std::move(error);
        return std::nullopt;
    }
    return c;
}

std::string Condition::value(size_t node, const Lookup& lookup) const {
    const Node& n = nodes_[node];
    switch (n.op) {
    case Op::Literal: return n.text;
    case Op::Ref: return lookup(refs_[n.ref]).value_or("");
    default: return truth(node, lookup) ? "true" : "false";
    }
}

bool Condition::truth(size_t node, const Lookup& lookup) const {
    const Node& n = nodes_[node];
    switch (n.op) {
    case Op::Literal:
    case Op::Ref: {
        const std::string v = value(node, lookup);
        return !(v.empty() || v == "0" || v == "false");
    }
    case Op::Not: return !truth(n.lhs, lookup);
    case Op::And: return truth(n.lhs, lookup) && truth(n.rhs, lookup);
    case Op::Or: return truth(n.lhs, lookup) || truth(n.rhs, lookup);
    default: break;
    }
    const std::string a = value(n.lhs, lookup);
    const std::string b = value(n.rhs, lookup);
    double x = 0, y = 0;
    int order = 0;
    if (parseNumber(a, &x) && parseNumber(b, &y)) {
        order = x < y ? -1 : (x > y ? 1 : 0);
    } else {
        int c = a.compare(b);
        order = c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    switch (n.op) {
    case Op::Eq: return order == 0;
    case Op::Ne: return order != 0;
    case Op::Lt: return order < 0;
    case Op::Le: return order <= 0;
    case Op::Gt: return order > 0;
    case Op::Ge: return order >= 0;
    default: return false;
    }
}

bool Condition::evaluate(const Lookup& lookup) const { return truth(root_, lookup); }

} // namespace taskhub::expr
