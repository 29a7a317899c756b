package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

var errHelp = errors.New("help")

// parseFlags parses fs from args, allowing positional arguments between and after flags, and
// returns the positional arguments. After "--" every argument is positional, as POSIX has it. --help
// prints usage and returns errHelp; a bad flag is a usage error pointing at try.
func parseFlags(m *Main, fs *flag.FlagSet, usage, try string, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(m.Stdout, usage)
				return nil, errHelp
			}
			return nil, usagef(try, "%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		if used := len(args) - fs.NArg(); used > 0 && args[used-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseCommandFlags is parseFlags for a command that takes no positional arguments.
func parseCommandFlags(m *Main, fs *flag.FlagSet, usage, try string, args []string) error {
	pos, err := parseFlags(m, fs, usage, try, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef(try, "%s: unexpected arguments %q", fs.Name(), pos)
	}
	return nil
}
