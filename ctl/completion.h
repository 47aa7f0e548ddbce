// Shell completion for taskhubctl: the bash, zsh and fish scripts that `taskhubctl completion
// SHELL` prints, generated from the command table (cli.h): the commands (two-word ones like
// `plugin show` too), each command's options with their aliases, the global options, what each
// option value and argument completes to (Values), and the fixed sets of values, taken from the
// code that parses them. Live names (workflows, runs, plugins) and time zones are not in the
// script: it asks `taskhubctl completion --candidates KIND` for them at completion time.
//
// Candidates come from files less trusted users may write (workflow names, run ids): the scripts
// treat them as data (never evaluated, never word-split or glob-expanded), and candidateLines()
// leaves out any that a line cannot carry.
#ifndef TASKHUB_CTL_COMPLETION_H
#define TASKHUB_CTL_COMPLETION_H

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"

namespace taskhub::ctl {

// The shells completionScript() writes for (`completion SHELL`).
inline constexpr std::array<std::string_view, 3> kShells{"bash", "zsh", "fish"};
// The kinds of `completion --candidates KIND`.
inline constexpr std::array<std::string_view, 4> kCandidateKinds{"workflows", "runs", "plugins", "zones"};

// The values of a fixed set (RunState, DstGap, DstFold, Shell, CandidateKind), in the order of
// the code's table; empty for the other kinds.
std::vector<std::string> fixedValues(Values v);

// The completion script for shell, one of kShells; empty for another name.
std::string completionScript(std::string_view shell);

// The candidates that can be offered, one per line: names with a control character (a newline,
// an escape sequence), an empty name or one longer than 255 bytes are left out.
std::string candidateLines(const std::vector<std::string>& names);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_COMPLETION_H
