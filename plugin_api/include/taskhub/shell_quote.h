/*
 * Quoting a value as one word of POSIX shell text (part of the TaskHub plugin SDK; C and C++).
 *
 * A plugin that builds shell command text from data it did not write itself (a task parameter, a
 * file name, an output of another task) must quote that data with th_shell_quote(): the shell then
 * receives exactly the value's bytes as one literal word, whatever they are (quotes, $(), `,
 * ;, |, newlines, spaces, a leading -, invalid UTF-8, the empty string). Never paste a value into
 * shell text any other way. Better still, run the program without a shell (execve with an argv
 * array), and pass values through the environment. See docs/plugin-guide.md.
 *
 * The quoted form is the value between single quotes, each ' inside it written as '\'' (close,
 * an escaped quote, reopen); inside '...' every other byte stands for itself in every POSIX shell
 * (dash, bash, ksh, zsh in sh mode). A non-empty value made only of letters, digits and
 * _ @ % + : , . / - that is not a shell keyword is its own quoted form (no shell treats those
 * characters specially anywhere in a word), so `rm ${params.file}` stays a plain command that the
 * shell plugin can run without a shell. The host uses this same function when it expands templates
 * into the parameters a plugin declares in th_plugin_api.shell_params.
 *
 * Header-only and dependency-free: usable from any plugin without linking anything.
 */
#ifndef TASKHUB_SHELL_QUOTE_H
#define TASKHUB_SHELL_QUOTE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The value TH_SHELL_QUOTE_NUL returned by th_shell_quote(): the value holds a NUL byte, which
 * no shell word can carry (the argv and environment strings of execve end at the first NUL). */
#define TH_SHELL_QUOTE_NUL ((size_t)-1)

/* Internal: 1 when value[0..len) needs no quotes (see the top of this file). */
static inline int th_shell_quote_plain_(const char *value, size_t len) {
    static const char *const keywords[] = {"case", "coproc", "do", "done", "elif", "else", "esac", "fi",
                                           "for", "function", "if", "in", "select", "then", "time",
                                           "until", "while"};
    size_t i, k;
    int letters_only = 1;
    if (len == 0) return 0;
    for (i = 0; i < len; ++i) {
        const char c = value[i];
        const int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter) letters_only = 0;
        if (!letter && !(c >= '0' && c <= '9') && c != '_' && c != '@' && c != '%' && c != '+' &&
            c != ':' && c != ',' && c != '.' && c != '/' && c != '-')
            return 0;
    }
    if (letters_only) {
        for (k = 0; k < sizeof keywords / sizeof keywords[0]; ++k) {
            size_t n = 0;
            while (keywords[k][n] != '\0') ++n;
            if (n == len) {
                for (i = 0; i < len && keywords[k][i] == value[i]; ++i) {
                }
                if (i == len) return 0;
            }
        }
    }
    return 1;
}

/* Writes the quoted form of value[0..len) to out, like snprintf: at most out_size bytes
 * including a terminating NUL (nothing when out_size is 0), and returns the length of the whole
 * quoted form without the NUL, so a caller can size its buffer with a first call passing
 * out_size 0. Returns TH_SHELL_QUOTE_NUL, writing nothing, when the value contains a NUL byte.
 * The quoted form is at most 2 + 4 * len bytes long. */
static inline size_t th_shell_quote(const char *value, size_t len, char *out, size_t out_size) {
    size_t need = 2;
    size_t i;
    for (i = 0; i < len; ++i) {
        if (value[i] == '\0') return TH_SHELL_QUOTE_NUL;
        need += value[i] == '\'' ? 4 : 1;
    }
    if (th_shell_quote_plain_(value, len)) {
        if (out_size > 0) {
            const size_t n = len < out_size - 1 ? len : out_size - 1;
            for (i = 0; i < n; ++i) out[i] = value[i];
            out[n] = '\0';
        }
        return len;
    }
    if (out_size > 0) {
        const size_t room = out_size - 1; /* bytes before the terminating NUL */
        size_t w = 0;
        if (w < room) out[w++] = '\'';
        for (i = 0; i < len; ++i) {
            const char *piece = value[i] == '\'' ? "'\\''" : &value[i];
            size_t k, n = value[i] == '\'' ? 4 : 1;
            for (k = 0; k < n; ++k) {
                if (w < room) out[w++] = piece[k];
            }
        }
        if (w < room) out[w++] = '\'';
        out[w] = '\0';
    }
    return need;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TASKHUB_SHELL_QUOTE_H */
