package main

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

func TestParseFrom(t *testing.T) {
	cases := []struct {
		in      string
		tenant  bool
		want    client.Start
		wantErr string
	}{
		{in: "earliest", want: client.FromEarliest()},
		{in: "earliest", tenant: true, want: client.FromSequence(1)}, // a tenant's earliest is seq:1
		{in: "latest", tenant: true, want: client.FromLatest()},
		{in: "offset:0", want: client.FromOffset(0)},
		{in: "offset:18446744073709551615", want: client.FromOffset(1<<64 - 1)},
		{in: "seq:7", tenant: true, want: client.FromSequence(7)},
		{in: "offset:x", wantErr: `"x" is not a non-negative integer`},
		{in: "offset:-1", wantErr: "not a non-negative integer"},
		{in: "offset:", wantErr: "not a non-negative integer"},
		{in: "seq:", tenant: true, wantErr: "not a non-negative integer"},
		{in: "seq:3", wantErr: "needs --tenant"},
		{in: "seq:0", tenant: true, wantErr: "start at 1"},
		{in: "time:2025-01-02T03:04:05Z", want: client.FromTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))},
		{in: "time:2025-01-02T03:04:05.5+01:00", tenant: true, want: client.FromTime(time.Date(2025, 1, 2, 2, 4, 5, 5e8, time.UTC))},
		{in: "foo", wantErr: "want earliest, latest, offset:N, seq:N or time:RFC3339"},
		{in: "time:3", wantErr: `"3" is not an RFC 3339 time`},
		{in: "time:2025-01-02", wantErr: "not an RFC 3339 time"},
		{in: "time:", wantErr: "not an RFC 3339 time"},
		{in: "time:2999-01-01T00:00:00Z", wantErr: "want a time from 1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z"},
		{in: "", wantErr: "want earliest"},
		{in: "Earliest", wantErr: "want earliest"},
	}
	for _, tc := range cases {
		got, err := parseFrom(tc.in, tc.tenant)
		if tc.wantErr != "" {
			require.Error(t, err, tc.in)
			assert.Contains(t, err.Error(), tc.wantErr, tc.in)
			var usage usageError
			assert.True(t, errors.As(err, &usage), "%q is a usage error", tc.in)
			assert.Equal(t, exitUsage, exitCode(err))
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}
