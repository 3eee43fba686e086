using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Admin;

namespace GpuPool.Scheduler.Tests.Admin;

/// <summary>Wrong admin credentials, per peer: a few free tries, then waits that double; other peers are not held up.</summary>
public sealed class CredentialThrottleTests
{
    private readonly ManualTimeProvider _clock = new();

    [Fact]
    public void After_the_free_tries_a_peer_waits_and_each_further_wrong_try_doubles_the_wait()
    {
        var throttle = new CredentialThrottle(_clock);
        for (var i = 0; i < CredentialThrottle.FreeTries - 1; i++)
        {
            throttle.Check("ipv4:10.0.0.5:4000");
            throttle.Failed("ipv4:10.0.0.5:4000");
        }

        throttle.Check("ipv4:10.0.0.5:4001");
        throttle.Failed("ipv4:10.0.0.5:4001");

        var refused = Assert.Throws<GpuPoolException>(() => throttle.Check("ipv4:10.0.0.5:4002"));
        Assert.Equal(ErrorCode.ResourceExhausted, refused.Code);
        Assert.Equal("too many refused credentials from 10.0.0.5: try again in 1 s", refused.Message);
        throttle.Check("ipv4:10.0.0.6:4000");

        _clock.Advance(TimeSpan.FromSeconds(1));
        throttle.Check("ipv4:10.0.0.5:4003");
        throttle.Failed("ipv4:10.0.0.5:4003");
        Assert.Equal("too many refused credentials from 10.0.0.5: try again in 2 s", Assert.Throws<GpuPoolException>(() => throttle.Check("ipv4:10.0.0.5:1")).Message);

        for (var i = 0; i < 30; i++)
        {
            _clock.Advance(CredentialThrottle.LongestWait);
            throttle.Failed("ipv4:10.0.0.5:1");
        }

        Assert.Equal($"too many refused credentials from 10.0.0.5: try again in {CredentialThrottle.LongestWait.TotalSeconds:0} s", Assert.Throws<GpuPoolException>(() => throttle.Check("ipv4:10.0.0.5:1")).Message);
    }

    [Fact]
    public void A_right_credential_clears_the_count_and_old_wrong_tries_are_forgotten()
    {
        var throttle = new CredentialThrottle(_clock);
        for (var i = 0; i < CredentialThrottle.FreeTries - 1; i++)
        {
            throttle.Failed("ipv6:[fd00::7]:5000");
        }

        throttle.Succeeded("ipv6:[fd00::7]:5001");
        for (var i = 0; i < CredentialThrottle.FreeTries - 1; i++)
        {
            throttle.Failed("ipv6:[fd00::7]:5002");
        }

        throttle.Check("ipv6:[fd00::7]:5003");
        _clock.Advance(CredentialThrottle.Memory + TimeSpan.FromSeconds(1));
        throttle.Failed("ipv6:[fd00::7]:5004");
        throttle.Check("ipv6:[fd00::7]:5005");
    }

    [Theory]
    [InlineData("ipv4:127.0.0.1:54321", "127.0.0.1")]
    [InlineData("ipv6:[::1]:54321", "::1")]
    [InlineData("unix:/run/gpupool.sock", "unix:/run/gpupool.sock")]
    public void A_peer_is_its_address_without_the_port(string peer, string key) => Assert.Equal(key, CredentialThrottle.Key(peer));
}
