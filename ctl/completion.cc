#include "completion.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

#include "model/states.h"
#include "next_preview.h"
#include "render.h"
#include "term.h"

namespace taskhub::ctl {

namespace {

// The name a script gives a kind of value; "" for None.
std::string_view kindName(Values v) {
    switch (v) {
    case Values::None: return "";
    case Values::Text: return "text";
    case Values::Workflow: return "workflow";
    case Values::Run: return "run";
    case Values::WorkflowOrRun: return "workflow_or_run";
    case Values::Plugin: return "plugin";
    case Values::Zone: return "zone";
    case Values::File: return "file";
    case Values::Command: return "command";
    case Values::RunState: return "run_state";
    case Values::DstGap: return "dst_gap";
    case Values::DstFold: return "dst_fold";
    case Values::Shell: return "shell";
    case Values::CandidateKind: return "candidate_kind";
    }
    return "";
}

constexpr Values kFixedSets[] = {Values::RunState, Values::DstGap, Values::DstFold, Values::Shell,
                                 Values::CandidateKind};

// 'text' for sh and zsh: nothing inside single quotes is special but the quote itself.
std::string shQuote(std::string_view s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// 'text' for fish, where \ and ' are escaped inside single quotes.
std::string fishQuote(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\\' || c == '\'') out += '\\';
        out += c;
    }
    return out + "'";
}

// A word the shell completes first: a command, or the first word of two-word commands.
struct TopWord {
    std::string word;
    std::string help;                     // the command's, or "plugin show, plugin check"
    std::vector<const Command*> subs;     // of a group
};

std::vector<TopWord> topWords() {
    std::vector<TopWord> out;
    for (const auto& c : commands()) {
        const auto space = c.name.find(' ');
        const std::string first(c.name.substr(0, space));
        auto it = std::find_if(out.begin(), out.end(), [&](const TopWord& t) { return t.word == first; });
        if (space == std::string_view::npos) {
            out.push_back({first, std::string(c.help), {}});
            continue;
        }
        if (it == out.end()) it = out.insert(out.end(), TopWord{first, "", {}});
        it->help += (it->help.empty() ? "" : ", ") + std::string(c.name);
        it->subs.push_back(&c);
    }
    return out;
}

// Every option of the command (nullptr: before a command) with the global ones and -h/--help.
std::vector<Option> optionsOf(const Command* c) {
    std::vector<Option> out;
    if (c) out = c->options;
    for (const auto& g : globalOptions()) out.push_back(g);
    out.push_back(helpOption());
    return out;
}

// Every option that takes a value, once per name, with its kind (the same in every command: a
// unit test checks).
std::map<std::string_view, Values> valueOptions() {
    std::map<std::string_view, Values> out;
    auto add = [&](const Option& o) {
        if (o.value.empty()) return;
        out.emplace(o.name, o.values);
        if (!o.alias.empty()) out.emplace(o.alias, o.values);
    };
    for (const auto& o : optionsOf(nullptr)) add(o);
    for (const auto& c : commands()) {
        for (const auto& o : c.options) add(o);
    }
    return out;
}

std::string joinWords(const std::vector<std::string>& words, std::string (*quote)(std::string_view)) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : " ") + quote(w);
    return out;
}

std::vector<std::string> optionSpellings(const Command* c) {
    std::vector<std::string> out;
    for (const auto& o : optionsOf(c)) {
        out.emplace_back(o.name);
        if (!o.alias.empty()) out.emplace_back(o.alias);
    }
    return out;
}

// "-1" for a command that takes any number of arguments.
std::string maxArgs(const Command& c) { return c.max_args == SIZE_MAX ? "-1" : std::to_string(c.max_args); }

std::string argKinds(const Command& c) {
    std::string out;
    for (Values v : c.args) out += (out.empty() ? "" : " ") + std::string(kindName(v));
    return out;
}

// The functions bash and zsh share in spirit, written for each: which option takes which value,
// which options each command has, the kind of each command's arguments, and the groups.
std::string shellTables(bool zsh) {
    const char* open = zsh ? "(" : "";
    std::string s;
    s += "# What completes the value of option $1 (nothing for a flag).\n_taskhubctl_option_values() {\n"
         "    case $1 in\n";
    for (const auto& [name, kind] : valueOptions()) {
        s += "    " + std::string(open) + shQuote(name) + ") echo " + std::string(kindName(kind)) + " ;;\n";
    }
    s += "    esac\n}\n\n";

    s += "# Whether $1 is the first word of two-word commands.\n_taskhubctl_is_group() {\n    case $1 in\n";
    std::string groups;
    for (const auto& t : topWords()) {
        if (!t.subs.empty()) groups += (groups.empty() ? "" : "|") + shQuote(t.word);
    }
    if (!groups.empty()) s += "    " + std::string(open) + groups + ") return 0 ;;\n";
    s += "    esac\n    return 1\n}\n\n";

    s += "# The kind of argument $2 (from 0) of command $1.\n_taskhubctl_arg() {\n"
         "    local -a kinds\n    local max=0\n    case $1 in\n";
    for (const auto& c : commands()) {
        if (c.args.empty()) continue;
        s += "    " + std::string(open) + shQuote(c.name) + ") kinds=(" + argKinds(c) + ") max=" + maxArgs(c) + " ;;\n";
    }
    s += "    *) return ;;\n    esac\n"
         "    (( max >= 0 && $2 >= max )) && return\n";
    if (zsh) {
        s += "    (( $2 < $#kinds )) && echo ${kinds[$2 + 1]} || echo ${kinds[-1]}\n}\n\n";
    } else {
        s += "    (( $2 < ${#kinds[@]} )) && echo \"${kinds[$2]}\" || echo \"${kinds[-1]}\"\n}\n\n";
    }
    return s;
}

std::string fixedCases(bool zsh, const std::string& offer) {
    std::string s;
    for (Values v : kFixedSets) {
        s += "    " + std::string(zsh ? "(" : "") + std::string(kindName(v)) + ") " + offer + " " +
             joinWords(fixedValues(v), shQuote) + " ;;\n";
    }
    return s;
}

std::string bashScript() {
    std::string s = R"SH(# bash completion for taskhubctl                           -*- shell-script -*-
# Generated by `taskhubctl completion bash` from taskhubctl's command table; do not edit.
# Workflow names, run ids, plugin names and time zones come from `taskhubctl completion
# --candidates KIND` and are data: never evaluated, word-split or glob-expanded.

# Adds the words given that start with $cur to COMPREPLY.
_taskhubctl_words() {
    local w
    for w in "$@"; do
        [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
    done
}

# Adds the candidates of kind $1 that start with $cur, quoted for the command line. The
# command is the caller's array ask: taskhubctl as typed, with the --socket and --config given.
_taskhubctl_ask() {
    local -a found
    local c q
    mapfile -t found < <("${ask[@]}" completion --candidates "$1" 2>/dev/null)
    for c in "${found[@]}"; do
        printf -v q '%q' "$c"
        [[ $c == "$cur"* || $q == "$cur"* ]] && COMPREPLY+=("$q")
    done
}

# Bash replaces only the part of the word after its last : or @ when COMP_WORDBREAKS holds them
# (: by default; @ unless hostcomplete is off, as bash-completion sets it; run ids hold an @):
# the candidates lose what comes before.
_taskhubctl_trim() {
    local breaks=${COMP_WORDBREAKS//[^@:]/}
    [[ -n $breaks && $cur == *["$breaks"]* ]] || return 0
    local keep=${cur%"${cur##*["$breaks"]}"}
    COMPREPLY=("${COMPREPLY[@]#"$keep"}")
}

)SH";
    s += "# The commands, and the first words of two-word commands.\n_taskhubctl_top() {\n    _taskhubctl_words";
    std::vector<std::string> top;
    for (const auto& t : topWords()) top.push_back(t.word);
    s += " " + joinWords(top, shQuote) + "\n}\n\n";

    s += "# The second words of the two-word commands of group $1.\n_taskhubctl_sub() {\n    case $1 in\n";
    for (const auto& t : topWords()) {
        if (t.subs.empty()) continue;
        std::vector<std::string> second;
        for (const Command* c : t.subs) second.emplace_back(c->name.substr(t.word.size() + 1));
        s += "    " + shQuote(t.word) + ") _taskhubctl_words " + joinWords(second, shQuote) + " ;;\n";
    }
    s += "    esac\n}\n\n";

    s += "# The options of command $1 (\"\": before a command), the global ones included.\n"
         "_taskhubctl_options() {\n    case $1 in\n";
    for (const auto& c : commands()) {
        if (c.options.empty()) continue;
        std::vector<std::string> own;
        for (const auto& o : c.options) {
            own.emplace_back(o.name);
            if (!o.alias.empty()) own.emplace_back(o.alias);
        }
        s += "    " + shQuote(c.name) + ") _taskhubctl_words " + joinWords(own, shQuote) + " ;;\n";
    }
    s += "    esac\n    _taskhubctl_words " + joinWords(optionSpellings(nullptr), shQuote) + "\n}\n\n";

    s += shellTables(false);
    s += R"SH(# Completes a value of kind $1.
_taskhubctl_values() {
    case $1 in
    workflow) _taskhubctl_ask workflows ;;
    run) _taskhubctl_ask runs ;;
    workflow_or_run) _taskhubctl_ask workflows; _taskhubctl_ask runs ;;
    plugin) _taskhubctl_ask plugins ;;
    zone) _taskhubctl_ask zones ;;
    file) _filedir ;;
    command)
        if ((nargs == 0)); then
            _taskhubctl_top
        elif _taskhubctl_is_group "$prev"; then
            _taskhubctl_sub "$prev"
        fi
        ;;
)SH";
    s += fixedCases(false, "_taskhubctl_words");
    s += R"SH(    esac
}

_taskhubctl() {
    local cur prev words cword split
    _init_completion -s -n @: || return
    local -a ask=("${words[0]}")
    local cmd="" w kind
    local -i i nargs=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        # --option=value, which readline splits at the = (in COMP_WORDBREAKS)
        if [[ $w == --* && ${words[i + 1]} == = ]] && ((i + 2 < cword)); then
            w+="=${words[i + 2]}"
            ((i += 2))
        fi
        if [[ $w == -?* ]]; then
            case $w in
            --socket=* | --config=*) ask+=("$w") ;;
            --socket | --config) ((i + 1 < cword)) && ask+=("$w" "${words[i + 1]/#\~\//$HOME/}") ;;
            esac
            [[ $w != *=* && -n $(_taskhubctl_option_values "$w") ]] && ((i++))
        elif [[ -z $cmd ]]; then
            cmd=$w
        elif [[ $cmd != *' '* ]] && _taskhubctl_is_group "$cmd"; then
            cmd+=" $w"
        else
            ((nargs++))
        fi
    done
    if [[ $prev == -?* ]]; then
        kind=$(_taskhubctl_option_values "$prev")
        if [[ -n $kind ]]; then
            _taskhubctl_values "$kind"
            _taskhubctl_trim
            return
        fi
    fi
    if [[ $cur == -* ]]; then
        _taskhubctl_options "$cmd"
    elif [[ -z $cmd ]]; then
        _taskhubctl_top
    elif [[ $cmd != *' '* ]] && _taskhubctl_is_group "$cmd"; then
        _taskhubctl_sub "$cmd"
    else
        _taskhubctl_values "$(_taskhubctl_arg "$cmd" "$nargs")"
    fi
    _taskhubctl_trim
}
complete -F _taskhubctl taskhubctl
)SH";
    return s;
}

// "name:description" items for zsh's _describe.
std::string describeItems(const std::vector<std::pair<std::string, std::string>>& items) {
    std::string out;
    for (const auto& [name, help] : items) out += "        " + shQuote(name + ":" + help) + "\n";
    return out;
}

std::vector<std::pair<std::string, std::string>> optionItems(const std::vector<Option>& options) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& o : options) {
        out.emplace_back(o.name, std::string(o.help));
        if (!o.alias.empty()) out.emplace_back(o.alias, std::string(o.help));
    }
    return out;
}

std::string zshScript() {
    std::string s = R"SH(#compdef taskhubctl
# zsh completion for taskhubctl; generated by `taskhubctl completion zsh` from taskhubctl's
# command table; do not edit. Workflow names, run ids, plugin names and time zones come from
# `taskhubctl completion --candidates KIND` and are data: offered by compadd, which quotes them.

# Offers the candidates of kind $1. The command is the caller's array ask: taskhubctl as typed,
# with the --socket and --config given.
_taskhubctl_ask() {
    local -a found
    found=("${(@f)$("${ask[@]}" completion --candidates $1 2>/dev/null)}")
    found=("${(@)found:#}")
    (( $#found )) && compadd -a found
}

)SH";
    s += "# The commands, and the first words of two-word commands.\n_taskhubctl_top() {\n    local -a c\n    c=(\n";
    std::vector<std::pair<std::string, std::string>> top;
    for (const auto& t : topWords()) top.emplace_back(t.word, t.help);
    s += describeItems(top) + "    )\n    _describe -t commands command c\n}\n\n";

    s += "# The second words of the two-word commands of group $1.\n_taskhubctl_sub() {\n    local -a c\n"
         "    case $1 in\n";
    for (const auto& t : topWords()) {
        if (t.subs.empty()) continue;
        std::vector<std::pair<std::string, std::string>> second;
        for (const Command* c : t.subs) second.emplace_back(c->name.substr(t.word.size() + 1), std::string(c->help));
        s += "    (" + shQuote(t.word) + ") c=(\n" + describeItems(second) + "    ) ;;\n";
    }
    s += "    esac\n    (( $#c )) && _describe -t commands command c\n}\n\n";

    s += "# The options of command $1 (\"\": before a command), the global ones included.\n"
         "_taskhubctl_options() {\n    local -a o\n    case $1 in\n";
    for (const auto& c : commands()) {
        if (c.options.empty()) continue;
        s += "    (" + shQuote(c.name) + ") o=(\n" + describeItems(optionItems(c.options)) + "    ) ;;\n";
    }
    std::vector<Option> globals = globalOptions();
    globals.push_back(helpOption());
    s += "    esac\n    o+=(\n" + describeItems(optionItems(globals)) + "    )\n    _describe -t options option o\n}\n\n";

    s += shellTables(true);
    s += R"SH(# Completes a value of kind $1.
_taskhubctl_values() {
    case $1 in
    (workflow) _taskhubctl_ask workflows ;;
    (run) _taskhubctl_ask runs ;;
    (workflow_or_run) _taskhubctl_ask workflows; _taskhubctl_ask runs ;;
    (plugin) _taskhubctl_ask plugins ;;
    (zone) _taskhubctl_ask zones ;;
    (file) _files ;;
    (command)
        if (( nargs == 0 )); then
            _taskhubctl_top
        elif _taskhubctl_is_group $prev; then
            _taskhubctl_sub $prev
        fi
        ;;
)SH";
    s += fixedCases(true, "compadd --");
    s += R"SH(    esac
}

_taskhubctl() {
    local -a ask
    ask=("${words[1]}")
    local cmd="" w kind cur=${words[CURRENT]} prev=${words[CURRENT-1]}
    local -i i nargs=0
    for (( i = 2; i < CURRENT; i++ )); do
        w=${words[i]}
        if [[ $w == -?* ]]; then
            case $w in
            (--socket=*|--config=*) ask+=("${(Q)w}") ;;
            (--socket|--config) (( i + 1 < CURRENT )) && ask+=("$w" "${${(Q)words[i+1]}/#\~\//$HOME/}") ;;
            esac
            [[ $w != *=* && -n $(_taskhubctl_option_values $w) ]] && (( i++ ))
        elif [[ -z $cmd ]]; then
            cmd=$w
        elif [[ $cmd != *' '* ]] && _taskhubctl_is_group $cmd; then
            cmd+=" $w"
        else
            (( nargs++ ))
        fi
    done
    if [[ $cur == --*=* ]]; then
        kind=$(_taskhubctl_option_values ${cur%%=*})
        compset -P '*='
        [[ -n $kind ]] && _taskhubctl_values $kind
        return
    fi
    if [[ $prev == -?* ]]; then
        kind=$(_taskhubctl_option_values $prev)
        if [[ -n $kind ]]; then
            _taskhubctl_values $kind
            return
        fi
    fi
    if [[ $cur == -* ]]; then
        _taskhubctl_options $cmd
    elif [[ -z $cmd ]]; then
        _taskhubctl_top
    elif [[ $cmd != *' '* ]] && _taskhubctl_is_group $cmd; then
        _taskhubctl_sub $cmd
    else
        _taskhubctl_values $(_taskhubctl_arg $cmd $nargs)
    fi
}

if [[ $funcstack[1] == _taskhubctl ]]; then
    _taskhubctl "$@"
else
    compdef _taskhubctl taskhubctl
fi
)SH";
    return s;
}

// fish's `complete` arguments that complete a value of kind v.
std::string fishValues(Values v) {
    switch (v) {
    case Values::None: return "";
    case Values::Text: return " -x";
    case Values::File: return " -r -F";
    case Values::Workflow: return " -x -a '(__taskhubctl_ask workflows)'";
    case Values::Run: return " -x -a '(__taskhubctl_ask runs)'";
    case Values::WorkflowOrRun: return " -x -a '(__taskhubctl_ask workflows; __taskhubctl_ask runs)'";
    case Values::Plugin: return " -x -a '(__taskhubctl_ask plugins)'";
    case Values::Zone: return " -x -a '(__taskhubctl_ask zones)'";
    case Values::Command: return " -x -a '(__taskhubctl_commands)'";
    case Values::RunState:
    case Values::DstGap:
    case Values::DstFold:
    case Values::Shell:
    case Values::CandidateKind: return " -x -a " + fishQuote(joinWords(fixedValues(v), shQuote));
    }
    return "";
}

std::string fishOption(const std::string& condition, const Option& o) {
    std::string s = "complete -c taskhubctl" + condition;
    auto spell = [&](std::string_view name) {
        if (name.size() == 2) s += " -s " + std::string(name.substr(1));
        else s += " -l " + std::string(name.substr(2));
    };
    spell(o.name);
    if (!o.alias.empty()) spell(o.alias);
    s += fishValues(o.values);
    if (!o.help.empty()) s += " -d " + fishQuote(o.help);
    return s + "\n";
}

std::string fishScript() {
    std::string s = R"SH(# fish completion for taskhubctl; generated by `taskhubctl completion fish` from taskhubctl's
# command table; do not edit. Workflow names, run ids, plugin names and time zones come from
# `taskhubctl completion --candidates KIND` and are data (one candidate per line, never evaluated).

# Prints the candidates of kind $argv[1]: taskhubctl as typed, with the --socket and --config given.
function __taskhubctl_ask
    set -l tokens (commandline -opc)
    set -l ask $tokens[1]
    set -l n (count $tokens)
    for i in (seq 2 $n)
        switch $tokens[$i]
            case '--socket=*' '--config=*'
                set -a ask $tokens[$i]
            case --socket --config
                if test $i -lt $n
                    set -a ask $tokens[$i] $tokens[(math $i + 1)]
                end
        end
    end
    command -q $ask[1]; or return
    command $ask completion --candidates $argv[1] 2>/dev/null
end

)SH";
    s += "# The commands, and the first words of two-word commands, with their help.\nfunction __taskhubctl_commands\n";
    for (const auto& t : topWords()) s += "    printf '%s\\t%s\\n' " + fishQuote(t.word) + " " + fishQuote(t.help) + "\n";
    s += "end\n\n";

    s += "# What completes the value of option $argv[1] (nothing for a flag).\nfunction __taskhubctl_option_values\n"
         "    switch $argv[1]\n";
    for (const auto& [name, kind] : valueOptions()) {
        s += "        case " + fishQuote(name) + "\n            echo " + std::string(kindName(kind)) + "\n";
    }
    s += "    end\nend\n\n";

    s += "# Whether $argv[1] is the first word of two-word commands.\nfunction __taskhubctl_is_group\n"
         "    switch $argv[1]\n";
    for (const auto& t : topWords()) {
        if (!t.subs.empty()) s += "        case " + fishQuote(t.word) + "\n            return 0\n";
    }
    s += "    end\n    return 1\nend\n\n";

    s += R"SH(# The command the line names so far (one or two words), then the number of its arguments.
function __taskhubctl_state
    set -l tokens (commandline -opc)
    set -l cmd ''
    set -l nargs 0
    set -l skip 0
    for w in $tokens[2..-1]
        if test $skip = 1
            set skip 0
            continue
        end
        if string match -q -- '-?*' $w
            set -l kind (__taskhubctl_option_values $w)
            if not string match -q -- '*=*' $w; and test -n "$kind"
                set skip 1
            end
        else if test -z "$cmd"
            set cmd $w
        else if not string match -q -- '* *' $cmd; and __taskhubctl_is_group $cmd
            set cmd "$cmd $w"
        else
            set nargs (math $nargs + 1)
        end
    end
    echo $cmd
    echo $nargs
end

# Whether the line names command $argv[1] so far ('' before a command).
function __taskhubctl_is
    set -l state (__taskhubctl_state)
    test "$state[1]" = "$argv[1]"
end

)SH";
    s += "# The kind of the argument the cursor is on.\nfunction __taskhubctl_next_arg\n"
         "    set -l state (__taskhubctl_state)\n    set -l kinds\n    set -l max 0\n    switch $state[1]\n";
    for (const auto& c : commands()) {
        if (c.args.empty()) continue;
        s += "        case " + fishQuote(c.name) + "\n            set kinds " + argKinds(c) + "\n            set max " +
             maxArgs(c) + "\n";
    }
    s += R"SH(        case '*'
            return
    end
    if test $max -ge 0 -a $state[2] -ge $max
        return
    end
    if test $state[2] -lt (count $kinds)
        echo $kinds[(math $state[2] + 1)]
    else
        echo $kinds[-1]
    end
end

# Whether the argument the cursor is on completes to kind $argv[1].
function __taskhubctl_arg_is
    set -l kind (__taskhubctl_next_arg)
    test "$kind" = $argv[1]
end

complete -c taskhubctl -f
complete -c taskhubctl -n '__taskhubctl_is ""' -x -a '(__taskhubctl_commands)'
)SH";
    for (const auto& t : topWords()) {
        for (const Command* c : t.subs) {
            s += "complete -c taskhubctl -n " + fishQuote("__taskhubctl_is " + shQuote(t.word)) + " -x -a " +
                 fishQuote(shQuote(c->name.substr(t.word.size() + 1))) + " -d " + fishQuote(c->help) + "\n";
        }
    }
    std::set<Values> argKindsUsed;
    for (const auto& c : commands()) argKindsUsed.insert(c.args.begin(), c.args.end());
    for (Values v : argKindsUsed) {
        if (v == Values::None || v == Values::Text) continue;
        s += "complete -c taskhubctl -n " + fishQuote("__taskhubctl_arg_is " + std::string(kindName(v))) +
             fishValues(v) + "\n";
    }
    for (const auto& o : optionsOf(nullptr)) s += fishOption("", o);
    for (const auto& c : commands()) {
        for (const auto& o : c.options) {
            s += fishOption(" -n " + fishQuote("__taskhubctl_is " + shQuote(c.name)), o);
        }
    }
    return s;
}

} // namespace

std::vector<std::string> fixedValues(Values v) {
    std::vector<std::string> out;
    switch (v) {
    case Values::RunState:
        for (const auto& [state, name] : model::NameTable<model::RunState>::entries) out.emplace_back(name);
        out.emplace_back("lost"); // not a state: the runs in which recovery found lost attempts (store RunFilter)
        break;
    case Values::DstGap:
        for (const auto& [gap, name] : kDstGapNames) out.emplace_back(name);
        break;
    case Values::DstFold:
        for (const auto& [fold, name] : kDstFoldNames) out.emplace_back(name);
        break;
    case Values::Shell: out.assign(kShells.begin(), kShells.end()); break;
    case Values::CandidateKind: out.assign(kCandidateKinds.begin(), kCandidateKinds.end()); break;
    default: break;
    }
    return out;
}

std::string completionScript(std::string_view shell) {
    if (shell == "bash") return bashScript();
    if (shell == "zsh") return zshScript();
    if (shell == "fish") return fishScript();
    return {};
}

std::string candidateLines(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) {
        if (n.empty() || n.size() > 255) continue;
        // What taskhubctl would escape before showing it (C0, DEL and C1 controls, line and
        // paragraph separators, bidi embeddings, overrides and isolates) cannot be offered as it
        // is: a terminal may take it for an escape sequence, or it reorders what the shell shows
        // after it. Nor can bytes that are not UTF-8.
        if (terminalSafe(n) != n || validUtf8(n) != n) continue;
        out += n + "\n";
    }
    return out;
}

} // namespace taskhub::ctl
