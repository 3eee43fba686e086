using System.Security.Cryptography.X509Certificates;
using GpuPool.Coordination.Etcd;
using GpuPool.Protocol.Security;
using GpuPool.Testing.Etcd;

namespace GpuPool.Coordination.Tests.Etcd;

/// <summary>
/// The store's connection to a real etcd that asks who it is: over TLS with a client certificate (etcd's
/// --client-cert-auth, certificates from a pool CA), and with etcd's password authentication on (a user whose role may
/// read and write the pool's prefix). What works works; each misconfiguration fails at once with one sentence saying
/// what to change.
/// </summary>
public sealed class EtcdSecurityTests : IDisposable
{
    private const string User = SecuredEtcdFixture.User;
    private const string Password = SecuredEtcdFixture.Password;

    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-etcd-tls-").FullName;
    private readonly X509Certificate2 _ca = PoolCertificates.CreateAuthority("etcd-test", TimeSpan.FromDays(1));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Over_TLS_a_store_with_a_certificate_of_the_CA_works_and_one_without_or_trusting_another_CA_is_refused_saying_why()
    {
        await using var etcd = await SecuredEtcdFixture.StartTlsAsync(_ca, _dir);
        var endpoint = etcd.Members[0].ClientUrl;
        Assert.StartsWith("https://", endpoint, StringComparison.Ordinal);
        var client = PoolCertificates.Issue(_ca, new PoolIdentity("broker-1", PoolRole.Broker), ["127.0.0.1"], TimeSpan.FromDays(1));

        await using (var store = Store(endpoint, host => new PoolTls(Public(_ca), client).ClientOptions(host)))
        {
            var put = await store.PutAsync("brokers/b1", "up"u8.ToArray());
            Assert.Equal("up"u8.ToArray(), (await store.GetAsync("brokers/b1"))!.Value.ToArray());
            await using var watch = store.WatchAsync("brokers/", put.ModRevision).GetAsyncEnumerator();
            await store.PutAsync("brokers/b2", "up"u8.ToArray());
            Assert.True(await watch.MoveNextAsync());
            Assert.Equal("brokers/b2", watch.Current.Entry.Key);
        }

        // A refused certificate fails the call at once, not after the request timeout (a minute here).
        await using (var bare = Store(endpoint, host => new PoolTls(Public(_ca)).ClientOptions(host), timeout: TimeSpan.FromMinutes(1)))
        {
            var started = DateTime.UtcNow;
            var error = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await bare.GetAsync("brokers/b1"));
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30), $"failed after {DateTime.UtcNow - started}");
            Assert.Equal(
                $"etcd at {endpoint}: the TLS handshake failed: it closed the connection as HTTP/2 began, as etcd does when it asks for a client certificate (--client-cert-auth) and none was shown: give one its CA issued (--store-cert, --store-key)",
                error.Message);
            Assert.Contains("--store-cert", error.Message, StringComparison.Ordinal);
        }

        var other = PoolCertificates.CreateAuthority("another-pool", TimeSpan.FromDays(1));
        var stranger = PoolCertificates.Issue(other, new PoolIdentity("broker-1", PoolRole.Broker), ["127.0.0.1"], TimeSpan.FromDays(1));
        await using (var foreign = Store(endpoint, host => new PoolTls(Public(_ca), stranger).ClientOptions(host), timeout: TimeSpan.FromMinutes(1)))
        {
            var error = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await foreign.GetAsync("brokers/b1"));
            Assert.Equal(
                $"etcd at {endpoint}: the TLS handshake failed: it closed the connection as HTTP/2 began, as etcd does when it does not trust the client certificate shown: give one issued by the CA of its --trusted-ca-file (--store-cert, --store-key)",
                error.Message);
        }

        await using (var wrong = Store(endpoint, host => new PoolTls(Public(other), client).ClientOptions(host), timeout: TimeSpan.FromMinutes(1)))
        {
            var error = await Assert.ThrowsAsync<StoreUnavailableException>(async () => await wrong.GetAsync("brokers/b1"));
            Assert.StartsWith($"etcd at {endpoint}: the TLS handshake failed: its certificate (CN=etcd0, O=gpupool store) is not trusted", error.Message, StringComparison.Ordinal);
            Assert.Contains("--store-ca", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task With_etcds_password_authentication_the_user_reads_writes_and_watches_its_prefix_and_gets_a_new_token_when_the_old_expires()
    {
        // Tokens that expire after a second idle, so the test sees one expire.
        await using var etcd = await EtcdCluster.StartAsync(extraArguments: ["--auth-token-ttl", "1"]);
        var endpoint = etcd.Members[0].ClientUrl;
        await etcd.EnableAuthAsync(User, Password, "pool/");

        await using var store = Store(endpoint, null, User, Password, "pool/");
        var put = await store.PutAsync("leases/l1", "a"u8.ToArray());
        await using var watch = store.WatchAsync("leases/", put.ModRevision).GetAsyncEnumerator();

        await Task.Delay(TimeSpan.FromSeconds(2.5));
        await store.PutAsync("leases/l2", "b"u8.ToArray());
        Assert.Equal("b"u8.ToArray(), (await store.GetAsync("leases/l2"))!.Value.ToArray());
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal("leases/l2", watch.Current.Entry.Key);
    }

    [Fact]
    public async Task With_etcds_password_authentication_no_user_a_wrong_password_and_a_foreign_prefix_are_each_refused_in_one_sentence()
    {
        await using var etcd = await EtcdCluster.StartAsync();
        var endpoint = etcd.Members[0].ClientUrl;
        await etcd.EnableAuthAsync(User, Password, "pool/");

        await using (var anonymous = Store(endpoint, null, prefix: "pool/"))
        {
            var error = await Assert.ThrowsAnyAsync<InvalidOperationException>(async () => await anonymous.GetAsync("leases/l1"));
            Assert.Equal($"etcd at {endpoint} has authentication on and this process gave no user: give --store-user and its password (GPUPOOL_STORE_PASSWORD or --store-password-file)", error.Message);
        }

        await using (var wrong = Store(endpoint, null, User, "wrong", "pool/"))
        {
            var error = await Assert.ThrowsAnyAsync<InvalidOperationException>(async () => await wrong.GetAsync("leases/l1"));
            Assert.StartsWith($"etcd at {endpoint} refused user 'gpupool': the user does not exist or the password is wrong", error.Message, StringComparison.Ordinal);
        }

        await using (var elsewhere = Store(endpoint, null, User, Password, "other/"))
        {
            var error = await Assert.ThrowsAnyAsync<InvalidOperationException>(async () => await elsewhere.PutAsync("leases/l1", "x"u8.ToArray()));
            Assert.StartsWith($"etcd at {endpoint} denied user 'gpupool' the request", error.Message, StringComparison.Ordinal);
        }

        // Nothing was written by the refused calls.
        await using var allowed = Store(endpoint, null, User, Password, "pool/");
        Assert.Null(await allowed.GetAsync("leases/l1"));
    }

    [Fact]
    public void Options_that_cannot_work_are_refused_before_any_call()
    {
        Assert.Contains("every endpoint is http://", Assert.Throws<ArgumentException>(() => new EtcdClusterStoreOptions { Endpoints = ["http://127.0.0.1:2379"], Tls = _ => new() }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("without a password", Assert.Throws<ArgumentException>(() => new EtcdClusterStoreOptions { User = "u" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("without a user", Assert.Throws<ArgumentException>(() => new EtcdClusterStoreOptions { Password = "p" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("is not etcd", Assert.Throws<ArgumentException>(() => StoreFactory.Open("embedded", new StoreSecurity(null, "u", "p"))).Message, StringComparison.Ordinal);
    }

    private static EtcdClusterStore Store(
        string endpoint, Func<string, System.Net.Security.SslClientAuthenticationOptions>? tls, string? user = null, string? password = null, string prefix = "test/", TimeSpan? timeout = null)
        => new(new EtcdClusterStoreOptions { Endpoints = [endpoint], KeyPrefix = prefix, Tls = tls, User = user, Password = password, RequestTimeout = timeout ?? TimeSpan.FromSeconds(5) });

    private static X509Certificate2 Public(X509Certificate2 certificate) => SecuredEtcdFixture.PublicOnly(certificate);
}
