// Private to the config module: taskhub.toml.d, the drop-in directory of a daemon config file.
// Includes toml_support.h (toml11), so it must never be included from a public header.
//
// For a config file F, every F.d/*.toml (not hidden, a regular file or a link to one) is merged
// over F in byte order of the file names before F is validated: a table merges key by key,
// recursively; any other value (arrays and arrays of tables included) replaces the earlier one
// whole. Each merged value keeps the place it was parsed from, so a problem found when the
// merged table is validated names the drop-in's file and line (Reporter::add(const Value&)).
#ifndef TASKHUB_CONFIG_CONFIG_DROPINS_H
#define TASKHUB_CONFIG_CONFIG_DROPINS_H

#include <filesystem>
#include <vector>

#include "config/diagnostic.h"
#include "config/toml_support.h"

namespace taskhub::config::detail {

// More drop-ins than this refuse the config: each is read whole, so their number is bounded too.
inline constexpr size_t kMaxConfigDropIns = 128;

// F.d for the config file F.
std::filesystem::path dropInDir(const std::filesystem::path& config_file);

// Merges `over` into `base`: tables key by key (recursively), any other value replaces the
// earlier one whole.
void mergeOver(Value& base, const Value& over);

// Parses the drop-ins of config_file and merges them over *root, in order. A missing drop-in
// directory is no drop-in. `read` and `dir_check`, when set, read each file and check the
// directory (taskhubd: the trust rule of common/trust.h and the config's size bound); otherwise
// files are read plainly. Problems go to *problems, naming the drop-in (or the directory) and
// line; a drop-in that cannot be parsed is not merged. Returns the drop-ins read, in order.
std::vector<std::filesystem::path> mergeDropIns(const std::filesystem::path& config_file, Value* root,
                                                std::vector<Diagnostic>* problems, const FileReader& read,
                                                const DirCheck& dir_check);

} // namespace taskhub::config::detail

#endif // TASKHUB_CONFIG_CONFIG_DROPINS_H
