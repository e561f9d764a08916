# Helpers for run.sh (sourced): show each command, then run it.

# The words of a command as a shell reads them back: plain words as they are, others in
# single quotes (a ' inside becomes '\''), so what is printed can be pasted.
shell_words() {
  local out="" w q="'"
  for w in "$@"; do
    if [[ "$w" =~ ^[A-Za-z0-9_./:=@%+,^-][A-Za-z0-9_./:=@%+,^~-]*$ ]]; then  # no leading ~
      out+=" $w"
    else
      out+=" '${w//$q/$q\\$q$q}'"
    fi
  done
  printf '%s' "${out# }"
}

step() { printf '\n\033[1m$ %s\033[0m\n' "$(shell_words "$@")"; "$@"; }
