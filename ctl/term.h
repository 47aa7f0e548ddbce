// taskhubctl's manners at a terminal, as systemctl and kubectl have them: how many columns text
// takes (UTF-8, wide and combining characters), when and how states are coloured, times in the
// display zone (the daemon's, or UTC with --utc), and the pager for long output.
//
// The decisions are pure functions (unit-tested); main() makes them once from the command line
// and the environment and stores the outcome with setManners(), which the renderer reads.
// Threading: taskhubctl is single-threaded; setManners() is called before any output.
#ifndef TASKHUB_CTL_TERM_H
#define TASKHUB_CTL_TERM_H

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace date {
class time_zone;
}

namespace taskhub::ctl {

// ---- display width ----

// Columns a terminal gives one code point: 0 for combining marks and zero-width format characters
// (U+200B..U+200F, variation selectors, ...), 2 for East Asian wide and fullwidth characters and
// emoji, else 1. Control characters count 0 (terminalSafe() never lets them through).
int codePointWidth(char32_t c);
// Columns s takes: UTF-8 decoded with codePointWidth(); an SGR escape sequence (ESC [ ... m, which
// only taskhubctl's own colouring writes: terminalSafe() escapes every ESC of daemon text) takes
// none; a byte that is not part of valid UTF-8 takes one (a terminal shows a replacement).
size_t displayWidth(std::string_view s);
// s cut to at most width columns at a code point boundary, its escape sequences kept whole; when
// it had colour, a reset follows.
std::string fitWidth(std::string_view s, size_t width);

// s with each byte that does not start valid UTF-8 replaced by U+FFFD, cut after max bytes
// (at a character boundary, "..." added): for text of unknown origin that goes into JSON, which
// must be UTF-8, or into a one-line message.
std::string validUtf8(std::string_view s, size_t max = std::string_view::npos);

// ---- colour ----

// Whether states are coloured: only on a terminal (stdout_is_tty), never with --json, never with
// --no-color, never when NO_COLOR is set to anything non-empty (https://no-color.org), never when
// TERM is unset, empty or "dumb". no_color_env and term_env are the variables' values or nullptr.
bool colourWanted(bool stdout_is_tty, bool json, bool no_color_option, const char* no_color_env,
                  const char* term_env);

enum class Tone { None, Red, Green, Blue, Yellow, Magenta, Dim };

// The colour of a run, task or plugin health state: failed and unhealthy red; succeeded and
// healthy green; running and starting blue; queued, pending, ready, retrying, paused, frozen and
// degraded yellow; cancelled magenta; skipped dim; anything else none.
Tone stateTone(std::string_view state);
// text in tone's SGR colour, reset after it; text as it is for Tone::None or when !colour.
std::string paint(std::string_view text, Tone tone, bool colour);

// ---- times ----

// The instant ms (milliseconds since the epoch) in zone: "2026-12-07 18:30:00 +01:00" (seconds
// cut, the zone's offset at that instant; UTC gives +00:00).
std::string formatInstant(int64_t ms, const date::time_zone* zone);
// Its wall clock time alone: "18:30:00".
std::string formatClock(int64_t ms, const date::time_zone* zone);

// ---- the pager ----

// The pager to start, from $TASKHUB_PAGER, else $PAGER (each used when set, even empty), else
// "less"; nullopt when the chosen value is empty or "cat" (no pager). Arguments are the variables'
// values or nullptr.
std::optional<std::string> pagerCommand(const char* taskhub_pager, const char* pager);

// Whether the pager must be secure, as systemctl's (SYSTEMD_PAGERSECURE, CVE-2023-26604): a pager
// run with more privilege than the user who asked (through sudo, or set-uid) must not let them run
// commands or open files (less's !, |, v, :e). TASKHUB_PAGERSECURE (1/yes/true/on or 0/no/false/off)
// decides when set; else secure when the real and effective uid differ or SUDO_UID names another
// user than the effective one. A secure pager is less with LESSSECURE=1 and nothing else:
// TASKHUB_PAGER and PAGER are then only asked whether to page at all (empty or cat: no).
bool pagerSecure(const char* pagersecure_env, unsigned uid, unsigned euid, const char* sudo_uid);

// ---- what this invocation does (set once by main) ----

struct Manners {
    bool colour = false; // colourWanted()
    bool pager = false;  // stdout is a terminal, no --no-pager, no --json
    // The zone times are shown in, asked for the first time a time is printed (the daemon's zone
    // costs a request). Unset: UTC.
    std::function<const date::time_zone*()> zone;
};
void setManners(Manners m);

// paint(state, stateTone(state)) when colour is on.
std::string paintState(std::string_view state);
// The display zone (Manners::zone, asked once).
const date::time_zone* displayZone();

// Shows text, through the pager when Manners::pager is on, page is true, text has at least as
// many lines as the terminal and pagerCommand() names one; else writes it to stdout. The pager
// gets LESS=FRSXMK unless LESS is set (and LESSSECURE=1 when pagerSecure()). A pager that cannot be started: the text is printed
// directly. One that quits before reading everything (q in less) ends the output quietly.
// taskhubctl waits for the pager (ignoring SIGINT meanwhile, which the pager handles).
void showText(const std::string& text, bool page);

// For a command whose output may be paged (show, logs without --follow): while it lives,
// std::cout goes into a buffer; at its end the buffer goes to showText(). A no-op when
// Manners::pager is off.
class PagedOutput {
public:
    PagedOutput();
    ~PagedOutput();
    PagedOutput(const PagedOutput&) = delete;
    PagedOutput& operator=(const PagedOutput&) = delete;

private:
    std::ostringstream buffer_;
    std::streambuf* saved_ = nullptr;
};

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_TERM_H
