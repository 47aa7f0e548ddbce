#include "term.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <vector>

#include <date/tz.h>

namespace taskhub::ctl {

namespace {

struct Range {
    char32_t first, last;
};

// Zero-width: combining marks of the common scripts, zero-width and bidi format characters,
// Hangul medial vowels and final consonants, variation selectors.
constexpr Range kZeroWidth[] = {
    {0x0300, 0x036F}, {0x0483, 0x0489}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2},
    {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x061C, 0x061C}, {0x064B, 0x065F},
    {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4}, {0x06E7, 0x06E8}, {0x06EA, 0x06ED},
    {0x0711, 0x0711}, {0x0730, 0x074A}, {0x0900, 0x0902}, {0x093A, 0x093A}, {0x093C, 0x093C},
    {0x0941, 0x0948}, {0x094D, 0x094D}, {0x0951, 0x0957}, {0x0962, 0x0963}, {0x0E31, 0x0E31},
    {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x1160, 0x11FF}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF},
    {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F}, {0x20D0, 0x20FF},
    {0x302A, 0x302D}, {0x3099, 0x309A}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0xFEFF, 0xFEFF},
    {0x1F3FB, 0x1F3FF}, {0xE0000, 0xE0FFF},
};

// Two columns: East Asian wide and fullwidth characters and emoji presentation.
constexpr Range kWide[] = {
    {0x1100, 0x115F},   {0x231A, 0x231B},   {0x2329, 0x232A},   {0x23E9, 0x23EC},   {0x23F0, 0x23F0},
    {0x23F3, 0x23F3},   {0x25FD, 0x25FE},   {0x2614, 0x2615},   {0x2648, 0x2653},   {0x267F, 0x267F},
    {0x2693, 0x2693},   {0x26A1, 0x26A1},   {0x26AA, 0x26AB},   {0x26BD, 0x26BE},   {0x26C4, 0x26C5},
    {0x26CE, 0x26CE},   {0x26D4, 0x26D4},   {0x26EA, 0x26EA},   {0x26F2, 0x26F3},   {0x26F5, 0x26F5},
    {0x26FA, 0x26FA},   {0x26FD, 0x26FD},   {0x2705, 0x2705},   {0x270A, 0x270B},   {0x2728, 0x2728},
    {0x274C, 0x274C},   {0x274E, 0x274E},   {0x2753, 0x2755},   {0x2757, 0x2757},   {0x2795, 0x2797},
    {0x27B0, 0x27B0},   {0x27BF, 0x27BF},   {0x2B1B, 0x2B1C},   {0x2B50, 0x2B50},   {0x2B55, 0x2B55},
    {0x2E80, 0x3029},   {0x302E, 0x303E},   {0x3041, 0x3098},   {0x309B, 0x33FF},   {0x3400, 0x4DBF},
    {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},   {0xA960, 0xA97F},   {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},
    {0xFE10, 0xFE19},   {0xFE30, 0xFE6F},   {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x16FE0, 0x16FE4},
    {0x17000, 0x18CFF}, {0x1B000, 0x1B2FF}, {0x1F004, 0x1F004}, {0x1F0CF, 0x1F0CF}, {0x1F18E, 0x1F18E},
    {0x1F191, 0x1F19A}, {0x1F200, 0x1F251}, {0x1F300, 0x1F320}, {0x1F32D, 0x1F335}, {0x1F337, 0x1F37C},
    {0x1F37E, 0x1F393}, {0x1F3A0, 0x1F3CA}, {0x1F3CF, 0x1F3D3}, {0x1F3E0, 0x1F3F0}, {0x1F3F4, 0x1F3F4},
    {0x1F3F8, 0x1F3FA}, {0x1F400, 0x1F43E}, {0x1F440, 0x1F440}, {0x1F442, 0x1F4FC}, {0x1F4FF, 0x1F53D},
    {0x1F54B, 0x1F54E}, {0x1F550, 0x1F567}, {0x1F57A, 0x1F57A}, {0x1F595, 0x1F596}, {0x1F5A4, 0x1F5A4},
    {0x1F5FB, 0x1F64F}, {0x1F680, 0x1F6C5}, {0x1F6CC, 0x1F6CC}, {0x1F6D0, 0x1F6D2}, {0x1F6D5, 0x1F6D7},
    {0x1F6EB, 0x1F6EC}, {0x1F6F4, 0x1F6FC}, {0x1F7E0, 0x1F7EB}, {0x1F90C, 0x1F93A}, {0x1F93C, 0x1F945},
    {0x1F947, 0x1F9FF}, {0x1FA70, 0x1FAFF}, {0x20000, 0x2FFFD}, {0x30000, 0x3FFFD},
};

template <size_t N>
bool inRanges(char32_t c, const Range (&ranges)[N]) {
    auto it = std::upper_bound(std::begin(ranges), std::end(ranges), c,
                               [](char32_t v, const Range& r) { return v < r.first; });
    return it != std::begin(ranges) && c <= std::prev(it)->last;
}

// Decodes the UTF-8 code point at s[i]; *len: its bytes. nullopt (with *len = 1) for a byte
// that does not start valid UTF-8 (overlong forms, surrogates and values past U+10FFFF too).
std::optional<char32_t> decode(std::string_view s, size_t i, size_t* len) {
    *len = 1;
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) return b;
    size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
    if (n == 0 || (b >= 0xF5)) return std::nullopt;
    if (i + n > s.size()) return std::nullopt;
    char32_t c = b & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < n; ++k) {
        const auto cont = static_cast<unsigned char>(s[i + k]);
        if ((cont & 0xC0) != 0x80) return std::nullopt;
        c = (c << 6) | (cont & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF))
        return std::nullopt;
    *len = n;
    return c;
}

// The length of the SGR escape sequence at s[i] (ESC [ digits/; m), 0 when there is none.
size_t escapeLength(std::string_view s, size_t i) {
    if (s[i] != '\x1b' || i + 1 >= s.size() || s[i + 1] != '[') return 0;
    for (size_t j = i + 2; j < s.size(); ++j) {
        if (s[j] == 'm') return j - i + 1;
        if (!((s[j] >= '0' && s[j] <= '9') || s[j] == ';')) return 0;
    }
    return 0;
}

constexpr std::string_view kReset = "\x1b[0m";

struct State {
    Manners manners;
    const date::time_zone* zone = nullptr; // displayZone(), once asked
};

State& state() {
    static State s;
    return s;
}

const Manners& manners() { return state().manners; }

} // namespace

int codePointWidth(char32_t c) {
    if (c < 0x20 || (c >= 0x7F && c < 0xA0)) return 0;
    if (c < 0x300) return 1;
    if (inRanges(c, kZeroWidth)) return 0;
    return inRanges(c, kWide) ? 2 : 1;
}

size_t displayWidth(std::string_view s) {
    size_t w = 0;
    for (size_t i = 0; i < s.size();) {
        if (size_t esc = escapeLength(s, i)) {
            i += esc;
            continue;
        }
        size_t len = 1;
        auto c = decode(s, i, &len);
        w += c ? static_cast<size_t>(codePointWidth(*c)) : 1;
        i += len;
    }
    return w;
}

std::string fitWidth(std::string_view s, size_t width) {
    std::string out;
    size_t w = 0;
    bool coloured = false, cut = false;
    for (size_t i = 0; i < s.size();) {
        if (size_t esc = escapeLength(s, i)) {
            out.append(s.substr(i, esc));
            coloured = true;
            i += esc;
            continue;
        }
        size_t len = 1;
        auto c = decode(s, i, &len);
        const size_t cw = c ? static_cast<size_t>(codePointWidth(*c)) : 1;
        if (w + cw > width) {
            cut = true;
            break;
        }
        w += cw;
        out.append(s.substr(i, len));
        i += len;
    }
    if (cut && coloured) out += kReset;
    return out;
}

std::string validUtf8(std::string_view s, size_t max) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        size_t len = 1;
        const bool ok = decode(s, i, &len).has_value();
        if (out.size() + (ok ? len : 3) > max) return out + "...";
        if (ok) out.append(s.substr(i, len));
        else out += "\xEF\xBF\xBD";
        i += len;
    }
    return out;
}

bool colourWanted(bool stdout_is_tty, bool json, bool no_color_option, const char* no_color_env,
                  const char* term_env) {
    if (!stdout_is_tty || json || no_color_option) return false;
    if (no_color_env && *no_color_env) return false;
    return term_env && *term_env && std::string_view(term_env) != "dumb";
}

Tone stateTone(std::string_view s) {
    if (s == "failed" || s == "unhealthy") return Tone::Red;
    if (s == "succeeded" || s == "healthy") return Tone::Green;
    if (s == "running" || s == "starting") return Tone::Blue;
    if (s == "queued" || s == "pending" || s == "ready" || s == "retrying" || s == "paused" || s == "frozen" ||
        s == "degraded")
        return Tone::Yellow;
    if (s == "cancelled") return Tone::Magenta;
    if (s == "skipped") return Tone::Dim;
    return Tone::None;
}

std::string paint(std::string_view text, Tone tone, bool colour) {
    const char* sgr = nullptr;
    switch (tone) {
    case Tone::None: break;
    case Tone::Red: sgr = "\x1b[31m"; break;
    case Tone::Green: sgr = "\x1b[32m"; break;
    case Tone::Yellow: sgr = "\x1b[33m"; break;
    case Tone::Blue: sgr = "\x1b[34m"; break;
    case Tone::Magenta: sgr = "\x1b[35m"; break;
    case Tone::Dim: sgr = "\x1b[2m"; break;
    }
    if (!colour || !sgr || text.empty()) return std::string(text);
    return sgr + std::string(text) + std::string(kReset);
}

namespace {

date::local_seconds localTime(int64_t ms, const date::time_zone* zone, std::chrono::seconds* offset) {
    using namespace std::chrono;
    const sys_seconds t{seconds{ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000)}};
    *offset = zone ? zone->get_info(t).offset : seconds{0};
    return date::local_seconds{(t + *offset).time_since_epoch()};
}

} // namespace

std::string formatInstant(int64_t ms, const date::time_zone* zone) {
    std::chrono::seconds offset{};
    const auto local = localTime(ms, zone, &offset);
    const long long off = offset.count();
    const long long a = off < 0 ? -off : off;
    char tail[48];
    std::snprintf(tail, sizeof tail, " %c%02lld:%02lld", off < 0 ? '-' : '+', (a / 3600) % 100, (a / 60) % 60);
    return date::format("%F %T", local) + tail;
}

std::string formatClock(int64_t ms, const date::time_zone* zone) {
    std::chrono::seconds offset{};
    return date::format("%T", localTime(ms, zone, &offset));
}

std::optional<std::string> pagerCommand(const char* taskhub_pager, const char* pager) {
    const char* chosen = taskhub_pager ? taskhub_pager : pager ? pager : "less";
    std::string_view v(chosen);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty() || v == "cat") return std::nullopt;
    return std::string(v);
}

bool pagerSecure(const char* pagersecure_env, unsigned uid, unsigned euid, const char* sudo_uid) {
    if (pagersecure_env && *pagersecure_env) {
        const std::string_view v(pagersecure_env);
        if (v == "0" || v == "no" || v == "false" || v == "off") return false;
        return true; // 1, yes, true, on, and anything unclear: the safe side
    }
    if (uid != euid) return true;
    return sudo_uid && *sudo_uid && std::string_view(sudo_uid) != std::to_string(euid);
}

void setManners(Manners m) { state() = State{std::move(m), nullptr}; }

std::string paintState(std::string_view state) { return paint(state, stateTone(state), manners().colour); }

const date::time_zone* displayZone() {
    State& s = state();
    if (!s.zone) {
        s.zone = s.manners.zone ? s.manners.zone() : nullptr;
        if (!s.zone) s.zone = date::locate_zone("UTC");
    }
    return s.zone;
}

namespace {

size_t terminalRows() {
    struct winsize ws {};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return ws.ws_row;
    return 24;
}

// Writes all of data to fd; false when the reader went away (EPIPE) or another error came.
bool writeAll(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

// In the child: runs the pager on stdin; when it cannot be executed, copies stdin to stdout
// (the text is printed directly).
[[noreturn]] void execPager(const std::string& command, bool secure) {
    ::setenv("LESS", "FRSXMK", 0);
    if (secure) ::setenv("LESSSECURE", "1", 1);
    std::vector<std::string> words;
    std::string w;
    for (char c : command) {
        if (c == ' ' || c == '\t') {
            if (!w.empty()) words.push_back(std::move(w));
            w.clear();
        } else {
            w += c;
        }
    }
    if (!w.empty()) words.push_back(std::move(w));
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || !writeAll(STDOUT_FILENO, std::string_view(buf, static_cast<size_t>(n)))) break;
    }
    ::_exit(0);
}

// true when the text went to a pager (or, it failing to start, through its stand-in).
bool runPager(const std::string& command, bool secure, const std::string& text) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return false;
    std::cout.flush();
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        return false;
    }
    if (pid == 0) {
        ::dup2(fds[0], STDIN_FILENO); // dup2 clears O_CLOEXEC on the copy
        // The write end must go before the stand-in copies stdin, or it never sees the end.
        ::close(fds[0]);
        ::close(fds[1]);
        execPager(command, secure);
    }
    ::close(fds[0]);
    // The user may quit the pager before reading everything: then the write fails with EPIPE,
    // which ends the output quietly. Ctrl-C belongs to the pager while it runs.
    struct sigaction ignore {}, old_pipe {}, old_int {}, old_quit {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    ::sigaction(SIGINT, &ignore, &old_int);
    ::sigaction(SIGQUIT, &ignore, &old_quit);
    writeAll(fds[1], text);
    ::close(fds[1]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGQUIT, &old_quit, nullptr);
    return true;
}

} // namespace

void showText(const std::string& text, bool page) {
    if (page && manners().pager) {
        const auto lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
        if (lines >= terminalRows()) {
            if (auto command = pagerCommand(std::getenv("TASKHUB_PAGER"), std::getenv("PAGER"))) {
                const bool secure = pagerSecure(std::getenv("TASKHUB_PAGERSECURE"), ::getuid(), ::geteuid(),
                                                std::getenv("SUDO_UID"));
                if (runPager(secure ? "less" : *command, secure, text)) return;
            }
        }
    }
    std::cout << text << std::flush;
}

PagedOutput::PagedOutput() {
    if (manners().pager) saved_ = std::cout.rdbuf(buffer_.rdbuf());
}

PagedOutput::~PagedOutput() {
    if (!saved_) return;
    std::cout.rdbuf(saved_);
    showText(buffer_.str(), true);
}

} // namespace taskhub::ctl
