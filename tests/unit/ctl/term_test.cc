// taskhubctl's manners (term.h): display width of hostile UTF-8, when colour is used and which,
// times in a zone with the offset, and which pager is started.
#include "term.h"

#include <catch2/catch.hpp>

#include <date/tz.h>

#include "render.h"

using namespace taskhub::ctl;

TEST_CASE("display width counts columns as a terminal shows them") {
    CHECK(displayWidth("") == 0);
    CHECK(displayWidth("backup") == 6);
    CHECK(displayWidth("caf\xc3\xa9") == 4);                      // é: one column
    CHECK(displayWidth("cafe\xcc\x81") == 4);                     // e + combining acute: one column
    CHECK(displayWidth("\xe6\x97\xa5\xe6\x9c\xac") == 4);         // 日本: two wide characters
    CHECK(displayWidth("\xed\x95\x9c\xea\xb8\x80") == 4);         // 한글
    CHECK(displayWidth("\xef\xbc\xa1") == 2);                     // fullwidth A
    CHECK(displayWidth("\xf0\x9f\x9a\x80") == 2);                 // rocket emoji
    CHECK(displayWidth("a\xe2\x80\x8b" "b") == 2);                // zero-width space
    CHECK(displayWidth("\x1b[31mfailed\x1b[0m") == 6);            // taskhubctl's own colour: none
    CHECK(displayWidth("\xff\xfe") == 2);                         // not UTF-8: one column a byte
    CHECK(displayWidth("\xe6\x97") == 2);                         // a cut character: its bytes
    CHECK(displayWidth("\xc0\xaf") == 2);                         // overlong '/': not a character
    CHECK(displayWidth("\xed\xa0\x80") == 3);                     // a surrogate: not a character
}

TEST_CASE("tables align UTF-8 cells by display width") {
    auto lines = tableLines({"TASK", "STATE"}, {{"\xe6\x97\xa5\xe6\x9c\xac", "ok"}, {"cafe\xcc\x81", "ok"}, {"ab", "ok"}});
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "TASK  STATE");
    CHECK(lines[1] == "\xe6\x97\xa5\xe6\x9c\xac  ok");
    CHECK(lines[2] == "cafe\xcc\x81  ok");
    CHECK(lines[3] == "ab    ok");
    // A coloured cell pads as its text.
    lines = tableLines({"STATE", "X"}, {{paint("failed", Tone::Red, true), "1"}, {"ok", "2"}});
    CHECK(lines[1] == "\x1b[31mfailed\x1b[0m  1");
    CHECK(lines[2] == "ok      2");
}

TEST_CASE("hostile names: control, bidi and separator characters never reach the terminal raw") {
    CHECK(terminalSafe("a\x1b]0;pwned\x07" "b") == "a\\x1b]0;pwned\\x07b");
    CHECK(terminalSafe("evil\xe2\x80\xae" "txt.exe") == "evil\\u{202e}txt.exe"); // right-to-left override
    CHECK(terminalSafe("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u{2066}x\\u{2069}");  // isolates
    CHECK(terminalSafe("line\xe2\x80\xa8next") == "line\\u{2028}next");
    CHECK(terminalSafe("\xe2\x80\x94 dash") == "\xe2\x80\x94 dash"); // an em dash is text
    CHECK(terminalSafe("\xe2\x80") == "\xe2\x80");                    // cut short: bytes as they are
    // Escaped text takes the width of what is printed.
    CHECK(displayWidth(terminalSafe("a\x1b[2Jb")) == 9);
}

TEST_CASE("fitWidth cuts at a character, keeping colour whole") {
    CHECK(fitWidth("abcdef", 3) == "abc");
    CHECK(fitWidth("ab", 5) == "ab");
    CHECK(fitWidth("\xe6\x97\xa5\xe6\x9c\xac", 3) == "\xe6\x97\xa5"); // no half of a wide character
    CHECK(fitWidth("\x1b[34mrunning\x1b[0m", 3) == "\x1b[34mrun\x1b[0m");
    CHECK(fitWidth("\x1b[34mrun\x1b[0m", 3) == "\x1b[34mrun\x1b[0m");
}

TEST_CASE("a secure pager under sudo or set-uid, as systemctl's; TASKHUB_PAGERSECURE decides when set") {
    CHECK_FALSE(pagerSecure(nullptr, 1000, 1000, nullptr));
    CHECK_FALSE(pagerSecure(nullptr, 0, 0, nullptr));     // root at its own terminal
    CHECK_FALSE(pagerSecure(nullptr, 0, 0, "0"));         // sudo from root
    CHECK(pagerSecure(nullptr, 0, 0, "1000"));            // sudo taskhubctl by uid 1000
    CHECK(pagerSecure(nullptr, 1000, 0, nullptr));        // set-uid
    CHECK_FALSE(pagerSecure("0", 0, 0, "1000"));
    CHECK_FALSE(pagerSecure("off", 1000, 0, nullptr));
    CHECK(pagerSecure("1", 1000, 1000, nullptr));
    CHECK(pagerSecure("maybe", 1000, 1000, nullptr));
    CHECK_FALSE(pagerSecure("", 1000, 1000, nullptr)); // empty: as unset
}

TEST_CASE("validUtf8 keeps UTF-8, replaces other bytes and cuts at a character") {
    CHECK(validUtf8("plain \xc3\xa9") == "plain \xc3\xa9");
    CHECK(validUtf8("a\xff\xfe" "b") == "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
    CHECK(validUtf8("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); // a surrogate is no UTF-8
    CHECK(validUtf8("\xe6\x97\xa5x", 2) == "...");                                  // never half a character
    CHECK(validUtf8("abcdef", 3) == "abc...");
    CHECK(validUtf8(std::string(1'000'000, 'x'), 200).size() == 203);
}

TEST_CASE("colour only on a terminal, never with --json, --no-color, NO_COLOR or TERM=dumb") {
    CHECK(colourWanted(true, false, false, nullptr, "xterm-256color"));
    CHECK_FALSE(colourWanted(false, false, false, nullptr, "xterm")); // piped
    CHECK_FALSE(colourWanted(true, true, false, nullptr, "xterm"));   // --json
    CHECK_FALSE(colourWanted(true, false, true, nullptr, "xterm"));   // --no-color
    CHECK_FALSE(colourWanted(true, false, false, "1", "xterm"));      // NO_COLOR=1
    CHECK(colourWanted(true, false, false, "", "xterm"));             // NO_COLOR empty: as unset
    CHECK_FALSE(colourWanted(true, false, false, nullptr, "dumb"));
    CHECK_FALSE(colourWanted(true, false, false, nullptr, nullptr));
    CHECK_FALSE(colourWanted(true, false, false, nullptr, ""));
}

TEST_CASE("state colours") {
    CHECK(stateTone("failed") == Tone::Red);
    CHECK(stateTone("unhealthy") == Tone::Red);
    CHECK(stateTone("succeeded") == Tone::Green);
    CHECK(stateTone("healthy") == Tone::Green);
    CHECK(stateTone("running") == Tone::Blue);
    CHECK(stateTone("starting") == Tone::Blue);
    for (const char* s : {"queued", "pending", "ready", "retrying", "paused", "frozen", "degraded"}) {
        INFO(s);
        CHECK(stateTone(s) == Tone::Yellow);
    }
    CHECK(stateTone("cancelled") == Tone::Magenta);
    CHECK(stateTone("skipped") == Tone::Dim);
    CHECK(stateTone("-") == Tone::None);
    CHECK(stateTone("failed\x1b") == Tone::None);
    CHECK(paint("failed", Tone::Red, true) == "\x1b[31mfailed\x1b[0m");
    CHECK(paint("succeeded", Tone::Green, true) == "\x1b[32msucceeded\x1b[0m");
    CHECK(paint("running", Tone::Blue, true) == "\x1b[34mrunning\x1b[0m");
    CHECK(paint("skipped", Tone::Dim, true) == "\x1b[2mskipped\x1b[0m");
    CHECK(paint("failed", Tone::Red, false) == "failed");
    CHECK(paint("-", Tone::None, true) == "-");
}

TEST_CASE("times in a zone with its offset") {
    const auto* berlin = date::locate_zone("Europe/Berlin");
    const auto* utc = date::locate_zone("UTC");
    const auto* kolkata = date::locate_zone("Asia/Kolkata");
    const auto* newyork = date::locate_zone("America/New_York");
    const int64_t winter = 1796664600123; // 2026-12-07T17:30:00.123Z
    CHECK(formatInstant(winter, berlin) == "2026-12-07 18:30:00 +01:00");
    CHECK(formatInstant(winter, utc) == "2026-12-07 17:30:00 +00:00");
    CHECK(formatInstant(winter, kolkata) == "2026-12-07 23:00:00 +05:30");
    CHECK(formatInstant(winter, newyork) == "2026-12-07 12:30:00 -05:00");
    CHECK(formatClock(winter, berlin) == "18:30:00");
    // Summer time, and the two passes of 02:30 on the night clocks go back.
    CHECK(formatInstant(1782927000000, berlin) == "2026-07-01 19:30:00 +02:00");   // 17:30Z
    CHECK(formatInstant(1792888200000, berlin) == "2026-10-25 02:30:00 +02:00");   // 00:30Z
    CHECK(formatInstant(1792891800000, berlin) == "2026-10-25 02:30:00 +01:00");   // 01:30Z
    CHECK(formatInstant(-1000, utc) == "1969-12-31 23:59:59 +00:00");
}

TEST_CASE("the daemon's instants as shortTime shows them, in the display zone") {
    setManners(Manners{false, false, [] { return date::locate_zone("Europe/Berlin"); }});
    CHECK(shortTime("2026-12-07T17:30:00.123Z") == "2026-12-07 18:30:00 +01:00");
    CHECK(shortTime("2026-12-07T17:30:00Z") == "2026-12-07 18:30:00 +01:00");
    CHECK(shortTime("2026-12-07T18:30:00+01:00") == "2026-12-07 18:30:00 +01:00");
    CHECK(shortTime("-") == "-");
    CHECK(shortTime("soon") == "soon");
    CHECK(shortTime("2026-12-07T17:30:00.12xZ") == "2026-12-07T17:30:00.12xZ");
    CHECK(isoToMs("2026-12-07T17:30:00Z") == 1796664600000);
    CHECK(isoToMs("2026-12-07T17:30:00.123Z") == 1796664600123);
    CHECK(isoToMs("2026-12-07T17:30:00+01:00") == -1);
    setManners(Manners{false, false, [] { return date::locate_zone("UTC"); }}); // --utc
    CHECK(shortTime("2026-12-07T17:30:00.123Z") == "2026-12-07 17:30:00 +00:00");
    setManners(Manners{});
}

TEST_CASE("which pager: TASKHUB_PAGER, then PAGER, then less; empty or cat: none") {
    CHECK(pagerCommand(nullptr, nullptr) == "less");
    CHECK(pagerCommand(nullptr, "more") == "more");
    CHECK(pagerCommand("most -s", "more") == "most -s");
    CHECK(pagerCommand("", "more") == std::nullopt); // set but empty: no pager, PAGER not asked
    CHECK(pagerCommand(nullptr, "") == std::nullopt);
    CHECK(pagerCommand(nullptr, "cat") == std::nullopt);
    CHECK(pagerCommand("  cat ", nullptr) == std::nullopt);
    CHECK(pagerCommand(nullptr, " less -R ") == "less -R");
}
