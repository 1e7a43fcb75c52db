package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client/heraldtest"
)

// TestTenantQuotaFlagsRefuseBadInput: negative numbers, a bare 0 and
// words other than the flag's own are refused while the command line is
// parsed (exit 2, nothing sent: the tenant is not created), naming the flag
// and saying what to write instead.
func TestTenantQuotaFlagsRefuseBadInput(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	cases := []struct {
		flag, value, message string
	}{
		{"--events-per-sec", "-5", `invalid argument "-5" for "--events-per-sec" flag: a quota cannot be negative: want a positive whole number, or "unlimited"`},
		{"--bytes-per-sec", "0", `invalid argument "0" for "--bytes-per-sec" flag: 0 is ambiguous: give "unlimited" for no limit`},
		{"--burst", "0", `invalid argument "0" for "--burst" flag: 0 is ambiguous: give "default" for one second's worth`},
		{"--burst", "unlimited", `invalid argument "unlimited" for "--burst" flag: want a positive whole number, or "default"`},
		{"--max-inflight-bytes", "1e6", `invalid argument "1e6" for "--max-inflight-bytes" flag: want a positive whole number, or "unlimited"`},
		{"--events-per-sec", "18446744073709551616", `too large: want at most 18446744073709551615, or "unlimited"`},
	}
	for _, tc := range cases {
		for _, verb := range []string{"create", "set-quota"} {
			res := runCLI(t, "", env, "tenant", verb, "acme", tc.flag, tc.value)
			assert.Equal(t, exitUsage, res.code, "%s %s %s: %s", verb, tc.flag, tc.value, res.stderr)
			assert.Contains(t, res.stderr, tc.message, "%s %s %s", verb, tc.flag, tc.value)
		}
	}
	res := runCLI(t, "", env, "tenant", "describe", "acme")
	assert.Equal(t, exitFailure, res.code)
	assert.Contains(t, res.stderr, `tenant "acme" not found`)
}

// TestTenantQuotaFlagsWords: "unlimited" and "default" are the wire's 0;
// setting the rate unlimited drops a burst the tenant had (a burst needs a
// rate), unless a burst is given.
func TestTenantQuotaFlagsWords(t *testing.T) {
	cluster := heraldtest.NewCluster(t, 1)
	env := map[string]string{serverEnv: cluster.Nodes[0].Addr}
	describe := func() quotaView {
		t.Helper()
		res := runCLI(t, "", env, "tenant", "describe", "acme", "--json")
		require.Equal(t, exitOK, res.code, res.stderr)
		var v tenantView
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &v))
		return v.Quota
	}
	res := runCLI(t, "", env, "tenant", "create", "acme", "--events-per-sec", "100", "--burst", "20", "--bytes-per-sec", "unlimited", "--max-inflight-bytes", "1048576")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, quotaView{EventsPerSec: 100, Burst: 20, MaxInflightBytes: 1 << 20}, describe())

	res = runCLI(t, "", env, "tenant", "set-quota", "acme", "--max-inflight-bytes", "unlimited", "--burst", "default")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Equal(t, quotaView{EventsPerSec: 100}, describe())

	res = runCLI(t, "", env, "tenant", "set-quota", "acme", "--burst", "30")
	require.Equal(t, exitOK, res.code, res.stderr)
	res = runCLI(t, "", env, "tenant", "set-quota", "acme", "--events-per-sec", "unlimited")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "quota: events/s unlimited, bytes/s unlimited, burst default, max inflight bytes unlimited")
	assert.Equal(t, quotaView{}, describe())

	res = runCLI(t, "", env, "tenant", "create", "--help")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, `--events-per-sec count       events per second, or "unlimited" (default unlimited)`)
}
