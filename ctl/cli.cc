#include "cli.h"

#include <algorithm>
#include <set>

#include "commands.h"
#include "config/daemon_config.h"

namespace taskhub::ctl {

namespace {

constexpr size_t kWidth = 96;      // of the usage text
constexpr size_t kHelpColumn = 32; // where a command's help starts in the usage text

const Option kHelp{"--help", "-h", {}, {}, false, "this text; COMMAND --help: that command's arguments and options"};

// An option by its name or alias: a global one, else the first command's that has it (the same
// in every command that has it).
const Option* findOption(std::string_view spelled) {
    for (const auto& o : globalOptions()) {
        if (o.name == spelled || o.alias == spelled) return &o;
    }
    for (const auto& c : commands()) {
        for (const auto& o : c.options) {
            if (o.name == spelled || o.alias == spelled) return &o;
        }
    }
    return nullptr;
}

// The command named by the first words of pos ("plugin show" before "plugin"); *words: how many.
const Command* findCommand(const std::vector<std::string>& pos, size_t* words) {
    if (pos.size() > 1) {
        const std::string two = pos[0] + " " + pos[1];
        for (const auto& c : commands()) {
            if (c.name == two) {
                *words = 2;
                return &c;
            }
        }
    }
    for (const auto& c : commands()) {
        if (c.name == pos[0]) {
            *words = 1;
            return &c;
        }
    }
    return nullptr;
}

// The commands whose name starts with "<group> " ("plugin show", "plugin check" of "plugin").
std::vector<const Command*> subcommands(std::string_view group) {
    std::vector<const Command*> out;
    for (const auto& c : commands()) {
        if (c.name.size() > group.size() && c.name.substr(0, group.size()) == group && c.name[group.size()] == ' ')
            out.push_back(&c);
    }
    return out;
}

std::string optionSynopsis(const Option& o) {
    std::string s = "[" + std::string(o.name);
    if (!o.value.empty()) s += " " + std::string(o.value);
    s += "]";
    if (o.repeatable) s += "...";
    return s;
}

// The command's name, arguments and options as words to wrap (an option's brackets are one word).
std::vector<std::string> synopsisWords(const Command& c) {
    std::vector<std::string> words{std::string(c.name)};
    if (!c.synopsis.empty()) words.emplace_back(c.synopsis);
    for (const auto& o : c.options) words.push_back(optionSynopsis(o));
    return words;
}

std::string joinWords(const std::vector<std::string>& words, const std::string& first, const std::string& indent,
                      size_t width) {
    std::string out, line = first;
    bool empty = true;
    for (const auto& w : words) {
        if (!empty && line.size() + 1 + w.size() > width) {
            out += line + "\n";
            line = indent;
            empty = true;
        }
        line += (empty ? "" : " ") + w;
        empty = false;
    }
    return out + line + "\n";
}

// An option's rows in a help table: "  -f, --follow    help".
std::string optionLines(const std::vector<Option>& options) {
    std::vector<std::pair<std::string, std::string_view>> rows;
    size_t w = 0;
    for (const auto& o : options) {
        std::string left = o.alias.empty() ? std::string(o.name) : std::string(o.alias) + ", " + std::string(o.name);
        if (!o.value.empty()) left += " " + std::string(o.value);
        w = std::max(w, left.size());
        rows.emplace_back(std::move(left), o.help);
    }
    std::string out;
    for (const auto& [left, help] : rows) {
        std::string first = "  " + left + std::string(w - left.size() + 3, ' ');
        out += wrapText(help, first, std::string(first.size(), ' '), kWidth);
    }
    return out;
}

std::string listOptions(const Command& c) {
    std::string list;
    for (const auto& o : c.options) list += (list.empty() ? "" : ", ") + std::string(o.name);
    return list;
}

} // namespace

bool Invocation::has(std::string_view name) const {
    return std::any_of(options.begin(), options.end(), [&](const auto& o) { return o.first == name; });
}

std::optional<std::string> Invocation::value(std::string_view name) const {
    for (const auto& [n, v] : options) {
        if (n == name) return v;
    }
    return std::nullopt;
}

const std::vector<Command>& commands() {
    static const std::vector<Command> all = [] {
        std::vector<Command> out;
        for (auto part : {daemonCommands(), runCommands(), backfillCommands(), offlineCommands(), completionCommands()}) {
            for (auto& c : part) out.push_back(std::move(c));
        }
        return out;
    }();
    return all;
}

const std::vector<Option>& globalOptions() {
    static const std::string config_help = std::string("daemon config (default ") + config::kDefaultConfigPath + ")";
    static const std::vector<Option> all = {
        {"--socket", {}, "PATH", "the socket path", false,
         "control socket (default: $TASKHUB_SOCKET, else the config's socket, else /run/taskhub/taskhub.sock)",
         Values::File},
        {"--config", {}, "FILE", "the config file", false, config_help,
         Values::File},
        {"--json", {}, {}, {}, false,
         "print the response as JSON (watch, run --follow: one JSON line per change); errors too, as "
         "{\"error\": {\"code\", \"message\"}} on stdout"},
        {"--no-color", {}, {}, {}, false,
         "no colours (also when NO_COLOR is set; states are coloured only on a terminal)"},
        {"--utc", {}, {}, {}, false, "show times in UTC, not in the daemon's time zone"},
        {"--no-pager", {}, {}, {}, false,
         "never page long output (default on a terminal: $TASKHUB_PAGER, else $PAGER, else less)"},
        {"--version", {}, {}, {}, false, "taskhubctl's version, and taskhubd's and its plugin ABI when it answers"},
    };
    return all;
}

const Option& helpOption() { return kHelp; }

std::string wrapText(std::string_view text, const std::string& first, const std::string& indent, size_t width) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < text.size()) {
        size_t j = text.find(' ', i);
        if (j == std::string_view::npos) j = text.size();
        if (j > i) words.emplace_back(text.substr(i, j - i));
        i = j + 1;
    }
    return joinWords(words, first, indent, width);
}

std::string usageText() {
    std::string out = "usage: taskhubctl [OPTIONS] COMMAND [ARGS]\n";
    const std::pair<Section, const char*> sections[] = {
        {Section::Daemon, "commands (through the daemon):"},
        {Section::Either, "through the daemon, or offline:"},
        {Section::Offline, "offline:"},
    };
    const std::string column(kHelpColumn, ' ');
    for (const auto& [section, title] : sections) {
        out += std::string("\n") + title + "\n";
        for (const auto& c : commands()) {
            if (c.section != section) continue;
            std::string synopsis = joinWords(synopsisWords(c), "  ", "       ", kWidth);
            synopsis.pop_back();
            const auto last = synopsis.rfind('\n');
            const size_t last_len = synopsis.size() - (last == std::string::npos ? 0 : last + 1);
            if (last == std::string::npos && last_len + 2 <= kHelpColumn) {
                out += wrapText(c.help, synopsis + std::string(kHelpColumn - last_len, ' '), column, kWidth);
            } else {
                out += synopsis + "\n" + wrapText(c.help, column, column, kWidth);
            }
        }
    }
    std::vector<Option> options = globalOptions();
    options.push_back(kHelp);
    out += "\noptions:\n" + optionLines(options);
    return out;
}

std::string commandHelp(const Command& c) {
    std::string out = joinWords(synopsisWords(c), "usage: taskhubctl [OPTIONS] ", "       ", kWidth);
    out += "\n" + wrapText(c.help, "", "", kWidth);
    if (!c.options.empty()) out += "\noptions:\n" + optionLines(c.options);
    out += "\nOPTIONS: the global options (--socket, --config, --json, ...), see 'taskhubctl --help'\n";
    return out;
}

std::optional<std::string> helpText(const std::vector<std::string>& words) {
    if (words.empty()) return usageText();
    std::string name;
    for (const auto& w : words) name += (name.empty() ? "" : " ") + w;
    for (const auto& c : commands()) {
        if (c.name == name) return commandHelp(c);
    }
    std::string group;
    if (words.size() == 1) {
        for (const Command* sub : subcommands(name)) group += (group.empty() ? "" : "\n") + commandHelp(*sub);
    }
    if (group.empty()) return std::nullopt;
    return group;
}

std::optional<ParsedLine> parseCommandLine(const std::vector<std::string>& argv, std::string* err,
                                           std::string* command) {
    ParsedLine line;
    Invocation& inv = line.inv;
    std::vector<std::string> pos;
    auto fail = [&](std::string why) -> std::optional<ParsedLine> {
        *err = std::move(why);
        size_t words = 0;
        const Command* c = pos.empty() ? nullptr : findCommand(pos, &words);
        if (command) *command = c ? std::string(c->name) : "";
        return std::nullopt;
    };
    // The help of the command named by pos, else of its group, else the usage text.
    auto helpOf = [&](const std::vector<std::string>& named) -> std::optional<ParsedLine> {
        size_t words = 0;
        const Command* c = named.empty() ? nullptr : findCommand(named, &words);
        auto text = c ? commandHelp(*c) : helpText(named.empty() ? named : std::vector<std::string>{named[0]});
        if (!text) return fail("unknown command '" + named[0] + "'");
        line.help_text = std::move(text);
        return line;
    };
    bool help_first = false;
    for (size_t i = 0; i < argv.size(); ++i) {
        std::string a = argv[i];
        std::optional<std::string> inline_value;
        if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
            inline_value = a.substr(a.find('=') + 1);
            a = a.substr(0, a.find('='));
        }
        if (a == kHelp.name || a == kHelp.alias) {
            // The help of the command named so far; before any command (taskhubctl --help runs),
            // of the command the rest of the line names, as git --help log does.
            if (pos.empty()) {
                help_first = true;
                continue;
            }
            return helpOf(pos);
        }
        if (a.size() < 2 || a[0] != '-') {
            pos.push_back(a);
            continue;
        }
        const Option* o = findOption(a);
        if (!o) return fail("unknown option '" + a + "'");
        std::string value;
        if (o->value.empty()) {
            if (inline_value) return fail(a + " takes no value");
        } else if (inline_value) {
            value = *inline_value;
        } else {
            if (i + 1 >= argv.size() || argv[i + 1].rfind("--", 0) == 0) {
                return fail(a + " needs a value: " + std::string(o->needs));
            }
            value = argv[++i];
        }
        if (o->name == "--socket") inv.globals.socket = value;
        else if (o->name == "--config") inv.globals.config = value;
        else if (o->name == "--json") inv.globals.json = true;
        else if (o->name == "--no-color") inv.globals.no_color = true;
        else if (o->name == "--utc") inv.globals.utc = true;
        else if (o->name == "--no-pager") inv.globals.no_pager = true;
        else if (o->name == "--version") inv.globals.version = true;
        else inv.options.emplace_back(o->name, value);
    }
    if (help_first) return helpOf(pos);
    if (inv.globals.version) {
        // taskhubctl status --version: the version, like --version alone; a word that names no
        // command is refused as on any other line.
        size_t words = 0;
        if (!pos.empty() && !findCommand(pos, &words)) return fail("unknown command '" + pos[0] + "'");
        return line;
    }
    if (pos.empty()) return fail("missing command");
    size_t words = 0;
    const Command* c = findCommand(pos, &words);
    if (!c) {
        std::string ways;
        for (const Command* sub : subcommands(pos[0])) {
            const std::string_view rest = sub->name.substr(pos[0].size() + 1);
            ways += (ways.empty() ? "" : " or ") + std::string(rest) + (sub->synopsis.empty() ? "" : " ") +
                    std::string(sub->synopsis);
        }
        if (!ways.empty()) {
            auto failed = fail(pos[0] + " takes " + ways);
            if (command) *command = pos[0]; // the hint: 'taskhubctl plugin --help', the group's usage
            return failed;
        }
        return fail("unknown command '" + pos[0] + "'");
    }
    inv.command = c;
    std::set<std::string> given;
    for (const auto& [name, v] : inv.options) {
        auto it = std::find_if(c->options.begin(), c->options.end(), [&](const Option& o) { return o.name == name; });
        if (it == c->options.end()) {
            const std::string list = listOptions(*c);
            return fail(std::string(c->name) + " does not take " + name +
                        (list.empty() ? " (it takes no options)" : " (its options: " + list + ")"));
        }
        if (!it->repeatable && !given.insert(name).second) return fail(name + " given twice");
    }
    inv.args.assign(pos.begin() + static_cast<std::ptrdiff_t>(words), pos.end());
    if (inv.args.size() < c->min_args || inv.args.size() > c->max_args) {
        return fail(std::string(c->name) + " takes " + std::string(c->takes));
    }
    return line;
}

} // namespace taskhub::ctl
