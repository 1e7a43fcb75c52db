package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// `herald bench scale` refuses bad flags as usage errors before it starts
// a cluster, each naming the flag.
func TestBenchScaleRefusesBadFlagsAsUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scale", "--steps", "100,50"}, "want increasing steps"},
		{[]string{"scale", "--steps", "a"}, `"a" is not a number`},
		{[]string{"scale", "--steps", ""}, "at least one step"},
		{[]string{"scale", "--max-replicas", "10"}, "--max-replicas 10: below the first step"},
		{[]string{"scale", "--topic-partitions", "0"}, "--topic-partitions 0"},
		{[]string{"scale", "--idle", "10ms"}, "--idle 10ms"},
		{[]string{"scale", "--fill-bytes", "1000", "--no-restart"}, "not with --no-restart"},
		{[]string{"scale", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"scale", "--server", "127.0.0.1:1"}, "scale starts its own cluster"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := runBench(t, tc.args...)
			assert.Equal(t, exitUsage, res.code, res.stderr)
			assert.Contains(t, res.stderr, tc.want)
			assert.Empty(t, res.stdout)
		})
	}
}
