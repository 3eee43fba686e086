using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using GpuPool.Coordination.Etcd;
using GpuPool.Protocol.Security;
using GpuPool.Testing.Etcd;

namespace GpuPool.Coordination.Tests.Etcd;

/// <summary>
/// One real etcd member as a pool that shares one should run it: TLS on its client port with a certificate of a pool
/// CA, client certificates required (--client-cert-auth), and password authentication on, with a user whose role reads
/// and writes <see cref="Prefix"/> only.
/// </summary>
public sealed class SecuredEtcdFixture : IAsyncLifetime
{
    public const string User = "gpupool";
    public const string Password = "correct horse";
    public const string Prefix = "secured/";

    private readonly string _dir = Directory.CreateTempSubdirectory("gpupool-etcd-secured-").FullName;
    private EtcdCluster? _cluster;

    public X509Certificate2 Authority { get; } = PoolCertificates.CreateAuthority("etcd-test", TimeSpan.FromDays(1));

    public EtcdCluster Cluster => _cluster ?? throw new InvalidOperationException("the etcd fixture has not started");

    /// <summary>A client certificate of the CA, as a broker's.</summary>
    public X509Certificate2 ClientCertificate { get; private set; } = null!;

    /// <summary>TLS options with the CA and <see cref="ClientCertificate"/>, for a member dialled at a host.</summary>
    public SslClientAuthenticationOptions Tls(string host) => new PoolTls(PublicOnly(Authority), ClientCertificate).ClientOptions(host);

    /// <summary>A store of the pool's user under a key prefix of its own inside <see cref="Prefix"/>.</summary>
    public EtcdClusterStore CreateStore() => new(new EtcdClusterStoreOptions
    {
        Endpoints = [.. Cluster.Members.Select(m => m.ClientUrl)],
        KeyPrefix = $"{Prefix}{Guid.NewGuid():N}/",
        Tls = Tls,
        User = User,
        Password = Password,
    });

    public async Task InitializeAsync()
    {
        ClientCertificate = PoolCertificates.Issue(Authority, new PoolIdentity("broker-1", PoolRole.Broker), ["127.0.0.1"], TimeSpan.FromDays(1));
        _cluster = await StartTlsAsync(Authority, _dir);
        await Cluster.EnableAuthAsync(User, Password, Prefix, Tls);
    }

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        Directory.Delete(_dir, recursive: true);
    }

    public static X509Certificate2 PublicOnly(X509Certificate2 certificate) => X509CertificateLoader.LoadCertificate(certificate.RawData);

    /// <summary>
    /// One etcd member serving clients over TLS with a certificate of <paramref name="authority"/> for 127.0.0.1 and
    /// asking for client certificates of it; its files are written to <paramref name="dir"/>.
    /// </summary>
    public static Task<EtcdCluster> StartTlsAsync(X509Certificate2 authority, string dir)
    {
        var server = PoolCertificates.Issue(authority, new PoolIdentity("etcd0", PoolRole.Store), ["127.0.0.1"], TimeSpan.FromDays(1));
        string caFile = Path.Combine(dir, "ca.crt"), certFile = Path.Combine(dir, "etcd0.crt"), keyFile = Path.Combine(dir, "etcd0.key");
        PoolCertificates.Write(PublicOnly(authority), caFile, null);
        PoolCertificates.Write(server, certFile, keyFile);
        return EtcdCluster.StartAsync(tls: new EtcdServerTls(certFile, keyFile, caFile, ClientCertAuth: true));
    }
}

/// <summary>The whole store contract against an etcd with TLS, client certificates and password authentication on.</summary>
public sealed class SecuredEtcdClusterStoreTests(SecuredEtcdFixture etcd) : ClusterStoreContract, IClassFixture<SecuredEtcdFixture>
{
    protected override TimeSpan SessionTtl => TimeSpan.FromSeconds(2);

    protected override TimeSpan ExpiryGrace => TimeSpan.FromSeconds(5);

    protected override Task<IClusterStore> CreateStoreAsync() => Task.FromResult<IClusterStore>(etcd.CreateStore());

    protected override Task AdvanceAsync(TimeSpan by) => Task.Delay(by);
}
