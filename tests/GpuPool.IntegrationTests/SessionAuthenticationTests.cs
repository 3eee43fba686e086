using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>Only a token the scheduler signed, unexpired, for this lease on this broker opens a session.</summary>
public sealed class SessionAuthenticationTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Fact]
    public async Task Session_opened_without_a_token_is_refused_with_Unauthenticated()
    {
        await using var lease = await pool.LeaseAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, ""));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.StartsWith("no lease token", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_opened_with_a_token_signed_by_another_key_is_refused_with_Unauthenticated()
    {
        await using var lease = await pool.LeaseAsync();
        using var forger = LeaseToken.CreateKey();
        var forged = LeaseToken.Sign(Claims(lease.Record, DateTimeOffset.UtcNow.AddHours(1)), forger);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, forged));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Equal("lease token signature does not verify: it was not issued by this pool's scheduler", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_opened_with_a_malformed_token_is_refused_with_Unauthenticated()
    {
        await using var lease = await pool.LeaseAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, "not-a-token"));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.StartsWith("malformed lease token", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_opened_with_an_expired_token_is_refused_with_Unauthenticated()
    {
        await using var lease = await pool.LeaseAsync();
        var expired = LeaseToken.Sign(Claims(lease.Record, DateTimeOffset.UtcNow.AddMinutes(-1)), pool.SigningKey);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, expired));

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.StartsWith($"lease token for lease {lease.Id} expired at ", error.Message, StringComparison.Ordinal);
        Assert.EndsWith("renew the lease to get a fresh token", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_opened_with_another_lease_token_is_refused_with_PermissionDenied()
    {
        await using var mine = await pool.LeaseAsync();
        await using var theirs = await pool.LeaseAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, theirs.Id, mine.Token));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal($"the token was issued for lease {mine.Id}, not for lease {theirs.Id}", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_opened_with_a_token_for_another_broker_is_refused_with_PermissionDenied()
    {
        await using var lease = await pool.LeaseAsync();
        var elsewhere = LeaseToken.Sign(Claims(lease.Record, DateTimeOffset.UtcNow.AddHours(1)) with { BrokerId = "other-broker" }, pool.SigningKey);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, elsewhere));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal($"lease {lease.Id} is placed on broker other-broker, not on this broker ({PoolFixture.BrokerId})", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_whose_first_op_is_not_open_is_refused_with_Unauthenticated()
    {
        await using var raw = RawSession.Connect(pool.Broker.Endpoint);
        await raw.SendAsync(new OpRequest { MemAlloc = new MemAlloc { Bytes = 64 } });

        var error = await Assert.ThrowsAsync<GpuPoolException>(raw.ReadAsync);

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Equal("a session must start with an open op carrying the lease token", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Session_with_a_valid_token_opens_and_describes_the_lease()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 32 << 20, share: 250);

        await using var session = await lease.OpenSessionAsync();

        Assert.Equal(lease.Id, session.Info.LeaseId);
        Assert.Equal("cpu", session.Info.Backend);
        Assert.Equal(0, session.Info.DriverVersion);
        Assert.Equal(32UL << 20, session.Info.MemoryLimitBytes);
        Assert.Equal(250U, session.Info.ComputeShare);
        Assert.Equal(pool.Device.Uuid, session.Info.Uuid);
        Assert.Equal(1024L, session.Info.Attributes[1]);
    }

    private static LeaseClaims Claims(LeaseRecord record, DateTimeOffset expires)
        => new(record.LeaseId, record.Tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare, expires.ToUnixTimeMilliseconds());
}
