package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldlog/herald/client"
)

// environment is what the commands take from the process, so that tests
// can run them in-process.
type environment struct {
	getenv func(string) string
}

// run executes the command line args and returns the exit code. Errors are
// printed to stderr as "herald: ..." (with a usage hint for usage errors).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var running bool
	root := newRootCommand(environment{getenv: getenv})
	markRunning(root, &running)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if !running {
		// Cobra failed before any command ran: unknown command, missing
		// required flag, wrong argument count.
		err = usageError{err}
	}
	var unreachable *client.UnreachableError
	switch {
	case errors.As(err, &unreachable):
		fmt.Fprintf(stderr, "herald: no node answered at %s: %s\n", strings.Join(unreachable.Servers, ","), unreachable.Cause())
	default:
		fmt.Fprintf(stderr, "herald: %s\n", err)
	}
	code := exitCode(err)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// newRootCommand builds the command tree.
func newRootCommand(env environment) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald: a clustered, Raft-replicated event log",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCommand(),
		newDevCommand(),
		newCertsCommand(),
		newTopicCommand(env),
		newTenantCommand(env),
		newGroupCommand(env),
		newProduceCommand(env),
		newConsumeCommand(env),
		newClusterCommand(env),
		newContextCommand(env),
		newTopCommand(env),
		newBenchCmd(),
		newJepsenCmd(),
		newTokenCommand(),
	)
	return root
}

// markRunning wraps every command's RunE so that *running tells whether an
// error came from a command that ran or from cobra before it.
func markRunning(cmd *cobra.Command, running *bool) {
	if inner := cmd.RunE; inner != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			*running = true
			return inner(c, args)
		}
	}
	for _, sub := range cmd.Commands() {
		markRunning(sub, running)
	}
}

// runGroup runs a command that only groups subcommands: it prints help,
// and an unknown subcommand is a usage error.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}
