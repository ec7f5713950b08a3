# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_peerstage_global_optspecs
    string join \n v/verbose q/quiet log-file= n/dry-run timeout= no-multiplex idle-timeout= max-entries= verify= bwlimit= lock-dir= h/help V/version
end

function __fish_peerstage_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_peerstage_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_peerstage_using_subcommand
    set -l cmd (__fish_peerstage_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c peerstage -n "__fish_peerstage_needs_command" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_needs_command" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_needs_command" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_needs_command" -l max-entries -d 'The most entries a peer\'s collect dir may list; a peer that lists more fails, and nothing of it is staged [default: the config\'s max_entries, else 100000]' -r
complete -c peerstage -n "__fish_peerstage_needs_command" -l verify -d 'How staged files are checked against the peer\'s: none, size (names and sizes), or sha256 (contents too) [default: the config\'s verify, else size]' -r -f -a "none\t''
size\t''
sha256\t''"
complete -c peerstage -n "__fish_peerstage_needs_command" -l bwlimit -d 'Hold the copy to this rate, like 10MiB/s, 500KiB/s or 2MB/s: for `stage` the peer\'s copy, for `run` all peers together (shared by those staged in parallel); a peer\'s own bwlimit in the config holds too. peerstage paces copies over SFTP and local ones; through a literal scp rcp command the limit becomes scp\'s -l [default: the config\'s bwlimit, else none]' -r
complete -c peerstage -n "__fish_peerstage_needs_command" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_needs_command" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_needs_command" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_needs_command" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_needs_command" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c peerstage -n "__fish_peerstage_needs_command" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "stage" -d 'Copy every regular file of a peer\'s collect dir into a target dir'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "check" -d 'Test whether a peer\'s collect indicator is there (exit 0 present, 1 absent, 69 unreachable)'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "mark" -d 'Write the stage indicator into a peer\'s collect dir'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "exec" -d 'Run a command on a remote peer through the rsh command'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "action" -d 'Run a Cedar Backup managed action (cback3 [--full] ACTION) on a remote peer'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "run" -d 'Stage every peer of a pool into <staging_dir>/YYYY/MM/DD/<peer>/ and write a job report'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "status" -d 'Show, per peer, whether its collect and stage indicators are there (changes nothing)'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "config" -d 'Check a config file, or print it as native TOML'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "locks" -d 'List lock files with their owner pid and whether the owner is alive'
complete -c peerstage -n "__fish_peerstage_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l target -d 'Existing absolute directory to copy the files into' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l owner -d 'Owner of the staged files: UID:GID or USER[:GROUP]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l mode -d 'Permissions of the staged files, in octal (e.g. 0640)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l collect-dir -d 'Absolute path of the peer\'s collect dir (exec and action do without)' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l name -d 'Name of a local peer [default: the collect dir\'s path, its slashes as dashes: /srv/db/collect is srv-db-collect]' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l host -d 'Host name of a remote peer; makes the peer remote' -r -f -a "(__fish_print_hostnames)"
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l remote-user -d 'User to log in as on the remote peer' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l local-user -d 'Local user to run the rcp/rsh commands as, through su (only when running as root)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l working-dir -d 'Local scratch dir for a remote peer [default: $TMPDIR or /tmp]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l rcp-command -d 'rcp-compatible copy command [default: /usr/bin/scp -B -q -C]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l rsh-command -d 'rsh-compatible shell command [default: /usr/bin/ssh]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l cback-command -d 'Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l config -d 'Take the peer from this config file (TOML or cback3.conf), with --peer' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l peer -d 'Name of the peer in --config' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l max-entries -d 'The most entries a peer\'s collect dir may list; a peer that lists more fails, and nothing of it is staged [default: the config\'s max_entries, else 100000]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l verify -d 'How staged files are checked against the peer\'s: none, size (names and sizes), or sha256 (contents too) [default: the config\'s verify, else size]' -r -f -a "none\t''
size\t''
sha256\t''"
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l bwlimit -d 'Hold the copy to this rate, like 10MiB/s, 500KiB/s or 2MB/s: for `stage` the peer\'s copy, for `run` all peers together (shared by those staged in parallel); a peer\'s own bwlimit in the config holds too. peerstage paces copies over SFTP and local ones; through a literal scp rcp command the limit becomes scp\'s -l [default: the config\'s bwlimit, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l wait -d 'Wait for the peer\'s lock if another process holds it, instead of failing with 75'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand stage" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l indicator -d 'Name of the collect indicator file' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l collect-dir -d 'Absolute path of the peer\'s collect dir (exec and action do without)' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l name -d 'Name of a local peer [default: the collect dir\'s path, its slashes as dashes: /srv/db/collect is srv-db-collect]' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l host -d 'Host name of a remote peer; makes the peer remote' -r -f -a "(__fish_print_hostnames)"
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l remote-user -d 'User to log in as on the remote peer' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l local-user -d 'Local user to run the rcp/rsh commands as, through su (only when running as root)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l working-dir -d 'Local scratch dir for a remote peer [default: $TMPDIR or /tmp]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l rcp-command -d 'rcp-compatible copy command [default: /usr/bin/scp -B -q -C]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l rsh-command -d 'rsh-compatible shell command [default: /usr/bin/ssh]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l cback-command -d 'Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l config -d 'Take the peer from this config file (TOML or cback3.conf), with --peer' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l peer -d 'Name of the peer in --config' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand check" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l indicator -d 'Name of the stage indicator file' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l owner -d 'Owner of the indicator (local peers): UID:GID or USER[:GROUP]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l mode -d 'Permissions of the indicator (local peers), in octal (e.g. 0640)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l collect-dir -d 'Absolute path of the peer\'s collect dir (exec and action do without)' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l name -d 'Name of a local peer [default: the collect dir\'s path, its slashes as dashes: /srv/db/collect is srv-db-collect]' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l host -d 'Host name of a remote peer; makes the peer remote' -r -f -a "(__fish_print_hostnames)"
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l remote-user -d 'User to log in as on the remote peer' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l local-user -d 'Local user to run the rcp/rsh commands as, through su (only when running as root)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l working-dir -d 'Local scratch dir for a remote peer [default: $TMPDIR or /tmp]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l rcp-command -d 'rcp-compatible copy command [default: /usr/bin/scp -B -q -C]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l rsh-command -d 'rsh-compatible shell command [default: /usr/bin/ssh]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l cback-command -d 'Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l config -d 'Take the peer from this config file (TOML or cback3.conf), with --peer' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l peer -d 'Name of the peer in --config' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l wait -d 'Wait for the peer\'s lock if another process holds it, instead of failing with 75'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand mark" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l collect-dir -d 'Absolute path of the peer\'s collect dir (exec and action do without)' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l name -d 'Name of a local peer [default: the collect dir\'s path, its slashes as dashes: /srv/db/collect is srv-db-collect]' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l host -d 'Host name of a remote peer; makes the peer remote' -r -f -a "(__fish_print_hostnames)"
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l remote-user -d 'User to log in as on the remote peer' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l local-user -d 'Local user to run the rcp/rsh commands as, through su (only when running as root)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l working-dir -d 'Local scratch dir for a remote peer [default: $TMPDIR or /tmp]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l rcp-command -d 'rcp-compatible copy command [default: /usr/bin/scp -B -q -C]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l rsh-command -d 'rsh-compatible shell command [default: /usr/bin/ssh]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l cback-command -d 'Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l config -d 'Take the peer from this config file (TOML or cback3.conf), with --peer' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l peer -d 'Name of the peer in --config' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand exec" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l collect-dir -d 'Absolute path of the peer\'s collect dir (exec and action do without)' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l name -d 'Name of a local peer [default: the collect dir\'s path, its slashes as dashes: /srv/db/collect is srv-db-collect]' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l host -d 'Host name of a remote peer; makes the peer remote' -r -f -a "(__fish_print_hostnames)"
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l remote-user -d 'User to log in as on the remote peer' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l local-user -d 'Local user to run the rcp/rsh commands as, through su (only when running as root)' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l working-dir -d 'Local scratch dir for a remote peer [default: $TMPDIR or /tmp]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l rcp-command -d 'rcp-compatible copy command [default: /usr/bin/scp -B -q -C]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l rsh-command -d 'rsh-compatible shell command [default: /usr/bin/ssh]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l cback-command -d 'Cedar Backup command on the peer, for managed actions [default: /usr/bin/cback3]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l config -d 'Take the peer from this config file (TOML or cback3.conf), with --peer' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l peer -d 'Name of the peer in --config' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l full -d 'Run the action as part of a full backup (passes --full)'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l wait -d 'Wait for the peer\'s lock if another process holds it, instead of failing with 75'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand action" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s c -l config -d 'Config file: native TOML, or Cedar Backup\'s cback3.conf' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s j -l jobs -d 'How many peers to stage at once [default: config\'s jobs, else up to 8]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l date -d 'Stage into this day\'s directory instead of today\'s' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l only -d 'Stage only this peer (repeatable)' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l metrics-file -d 'Write the run\'s outcome as Prometheus metrics to this file, for node_exporter\'s textfile collector [default: the config\'s metrics_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l max-entries -d 'The most entries a peer\'s collect dir may list; a peer that lists more fails, and nothing of it is staged [default: the config\'s max_entries, else 100000]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l verify -d 'How staged files are checked against the peer\'s: none, size (names and sizes), or sha256 (contents too) [default: the config\'s verify, else size]' -r -f -a "none\t''
size\t''
sha256\t''"
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l bwlimit -d 'Hold the copy to this rate, like 10MiB/s, 500KiB/s or 2MB/s: for `stage` the peer\'s copy, for `run` all peers together (shared by those staged in parallel); a peer\'s own bwlimit in the config holds too. peerstage paces copies over SFTP and local ones; through a literal scp rcp command the limit becomes scp\'s -l [default: the config\'s bwlimit, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l demo -d 'Stage a built-in demo pool of two local peers in a new temp dir (no config, no server)'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l full -d 'A full (weekly) run: passed to managed actions, and decides daily/weekly ignore modes'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l wait -d 'Wait for locks held by another process instead of failing with exit status 75'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l json -d 'Print the job report as one JSON document on stdout'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand run" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s c -l config -d 'Config file: native TOML, or Cedar Backup\'s cback3.conf' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l only -d 'Only this peer (repeatable)' -r -f
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l timeout -d 'Give up on a peer that takes longer than this (its commands are killed, nothing partial is kept; the peer counts as unreachable) [default: the config\'s timeout, else none]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l idle-timeout -d 'Give up on a peer (as unreachable) when a step of staging it moves no byte for this long; 0 turns the check off. Managed actions and exec are not watched [default: the config\'s idle_timeout, else 300]' -r
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l json -d 'Print one JSON document on stdout'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s n -l dry-run -d 'Print every command line and file operation instead of carrying it out; change nothing'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -l no-multiplex -d 'Open a new ssh connection for each command instead of sharing one per remote peer, and run the rcp/rsh command for the indicator probe and push, the copy and the size listing instead of SFTP requests'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand status" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "check" -d 'Load and validate a config file (exit 0 when valid, 2 otherwise)'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "show" -d 'Print the effective config as native TOML that `run` accepts'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -s c -l config -d 'Config file: native TOML, or Cedar Backup\'s cback3.conf' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -s c -l config -d 'Config file: native TOML, or Cedar Backup\'s cback3.conf' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Load and validate a config file (exit 0 when valid, 2 otherwise)'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the effective config as native TOML that `run` accepts'
complete -c peerstage -n "__fish_peerstage_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -s c -l config -d 'List the locks of this config\'s pool and peers, in its lock dir [default: every lock of the lock dir]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -l log-file -d 'Append timestamped log lines (info level, whatever -q says) to this file [default: the config\'s log_file, else none]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -l lock-dir -d 'Directory for lock files [default: the config\'s lock_dir, else /run/peerstage as root, else $XDG_RUNTIME_DIR/peerstage or /tmp/peerstage-UID]' -r -F
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -l all -d 'With --config: list every lock of its lock dir, whatever config it belongs to'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -l json -d 'Print one JSON document on stdout'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -s v -l verbose -d 'Say more (-v: each command run; -vv: debugging detail). RUST_LOG overrides'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -s q -l quiet -d 'Say only errors'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -s h -l help -d 'Print help'
complete -c peerstage -n "__fish_peerstage_using_subcommand locks" -s V -l version -d 'Print version'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "stage" -d 'Copy every regular file of a peer\'s collect dir into a target dir'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "check" -d 'Test whether a peer\'s collect indicator is there (exit 0 present, 1 absent, 69 unreachable)'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "mark" -d 'Write the stage indicator into a peer\'s collect dir'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "exec" -d 'Run a command on a remote peer through the rsh command'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "action" -d 'Run a Cedar Backup managed action (cback3 [--full] ACTION) on a remote peer'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "run" -d 'Stage every peer of a pool into <staging_dir>/YYYY/MM/DD/<peer>/ and write a job report'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "status" -d 'Show, per peer, whether its collect and stage indicators are there (changes nothing)'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "config" -d 'Check a config file, or print it as native TOML'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "locks" -d 'List lock files with their owner pid and whether the owner is alive'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and not __fish_seen_subcommand_from stage check mark exec action run status config locks help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Load and validate a config file (exit 0 when valid, 2 otherwise)'
complete -c peerstage -n "__fish_peerstage_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the effective config as native TOML that `run` accepts'
