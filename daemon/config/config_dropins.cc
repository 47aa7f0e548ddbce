#include "config/config_dropins.h"

#include <algorithm>
#include <string>
#include <system_error>

#include "config/workflow.h"

namespace taskhub::config::detail {

namespace fs = std::filesystem;

fs::path dropInDir(const fs::path& config_file) {
    fs::path dir = config_file;
    dir += ".d";
    return dir;
}

void mergeOver(Value& base, const Value& over) {
    if (!base.is_table() || !over.is_table()) {
        base = over;
        return;
    }
    auto& table = base.as_table();
    for (const auto& [key, value] : over.as_table()) {
        auto it = table.find(key);
        if (it == table.end()) table.emplace(key, value);
        else mergeOver(it->second, value); // depth bounded by kMaxTomlNesting of both texts
    }
}

namespace {

// The drop-in files of dir in byte order of their names, or a problem of the directory.
std::vector<fs::path> listDropIns(const fs::path& dir, std::vector<Diagnostic>* problems) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        // The rule of workflow file names: *.toml and not hidden, so editor backups (x.toml~,
        // .x.toml.swp) and packaging leftovers (x.toml.dpkg-dist) are not read.
        if (!isWorkflowFileName(it->path().filename().string())) continue;
        std::error_code type_ec;
        if (!it->is_regular_file(type_ec)) continue;
        files.push_back(it->path());
        if (files.size() > kMaxConfigDropIns) break; // refused below; no need to list the rest
    }
    if (ec) {
        problems->push_back({dir.string(), 0, "cannot read the config drop-in directory: " + ec.message()});
        return {};
    }
    if (files.size() > kMaxConfigDropIns) {
        problems->push_back({dir.string(), 0,
                             "more than " + std::to_string(kMaxConfigDropIns) +
                                 " drop-in files; at most that many are read: merge some of them"});
        return {};
    }
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
    return files;
}

} // namespace

std::vector<fs::path> mergeDropIns(const fs::path& config_file, Value* root, std::vector<Diagnostic>* problems,
                                   const FileReader& read, const DirCheck& dir_check) {
    const fs::path dir = dropInDir(config_file);
    std::error_code ec;
    const auto status = fs::status(dir, ec);
    if (status.type() == fs::file_type::not_found) return {};
    if (ec) {
        problems->push_back({dir.string(), 0, "cannot read the config drop-in directory: " + ec.message()});
        return {};
    }
    if (status.type() != fs::file_type::directory) {
        problems->push_back({dir.string(), 0,
                             "is not a directory (the config's drop-in directory holds *.toml files "
                             "merged over " + config_file.filename().string() + "): remove it or make it one"});
        return {};
    }
    if (dir_check) {
        if (auto why = dir_check(dir)) {
            problems->push_back({dir.string(), 0, "config drop-in directory refused: " + *why});
            return {};
        }
    }
    std::vector<fs::path> merged;
    for (const auto& file : listDropIns(dir, problems)) {
        Reporter r(file);
        std::optional<Value> over;
        if (read) {
            std::string text;
            if (auto why = read(file, &text)) r.add(0, "config drop-in refused: " + *why);
            else over = parseText(text, file, r);
        } else {
            over = parseFile(file, r);
        }
        if (!r.ok()) {
            problems->insert(problems->end(), r.problems().begin(), r.problems().end());
            continue;
        }
        mergeOver(*root, *over);
        merged.push_back(file);
    }
    return merged;
}

} // namespace taskhub::config::detail
