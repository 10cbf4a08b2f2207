# bash completion for instar. Everything it offers comes from the installed instar itself:
# subcommands from `instar --help`, flags from `instar COMMAND --help`, format names (-f, -O, -F)
# from the loaded plugins (`instar formats`), -o keys from `instar create -f FMT -o help` (qemu's)
# and the format's "options:" line in `instar formats` (instar's extension keys, which -o help
# leaves out).

_instar_formats() {
    instar formats 2>/dev/null | sed -n 's/^\([a-z0-9_]*\) [^ ]*: .*/\1/p'
}

_instar() {
    local cur prev words cword
    _init_completion -n = || return

    local i cmd=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        --qemu-version | --max-guest-memory) ((i++)) ;;
        -*) ;;
        *) cmd=${words[i]}; break ;;
        esac
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '--help --version --qemu-version --max-guest-memory' -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$(instar --help 2>/dev/null | sed -n 's/^  \([a-z]*\) - .*/\1/p')" -- "$cur"))
        fi
        return
    fi

    case $prev in
    -f | -O | -F | --source-format | --target-format | --format | --backing-format | --output-format)
        COMPREPLY=($(compgen -W "$(_instar_formats)" -- "$cur"))
        return
        ;;
    --output)
        COMPREPLY=($(compgen -W 'human json' -- "$cur"))
        return
        ;;
    -t | -T | --source-cache | --target-cache | --cache)
        COMPREPLY=($(compgen -W 'none writeback writethrough directsync unsafe' -- "$cur"))
        return
        ;;
    -o | --options | --target-options)
        # The format named earlier on the line (-f for create, -O for convert), else raw.
        local fmt=raw j
        for ((j = 1; j < cword - 1; j++)); do
            case ${words[j]} in
            -f | -O) [[ $cmd == convert && ${words[j]} == -f ]] || fmt=${words[j + 1]} ;;
            esac
        done
        local keys
        keys=$(instar create -f "$fmt" -o help 2>/dev/null | sed -n 's/^  \([a-z0-9_.-]*\)=.*/\1=/p')
        keys+=" $(instar formats 2>/dev/null | sed -n "/^$fmt /,/^[a-z]/s/^  options: *//p" | tr ',' '\n' |
            sed -n 's/^ *\([a-z0-9_.-]*\) (instar extension)$/\1=/p')"
        compopt -o nospace 2>/dev/null
        COMPREPLY=($(compgen -W "$keys" -- "${cur##*,}"))
        if [[ $cur == *,* ]]; then
            local head=${cur%,*},
            COMPREPLY=("${COMPREPLY[@]/#/$head}")
        fi
        return
        ;;
    esac

    if [[ $cur == -* ]]; then
        local flags
        flags=$(instar "$cmd" --help 2>/dev/null | grep -oE -- '(^|[ ,\[])--?[a-zA-Z][a-zA-Z0-9-]*' | sed 's/^[ ,[]//' | sort -u)
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return
    fi
    _filedir
}
complete -F _instar instar
