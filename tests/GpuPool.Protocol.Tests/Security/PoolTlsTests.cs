using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Security;

/// <summary>
/// The pool's CA and TLS between two real ends over loopback TCP: a server certificate of the pool's CA that names
/// the host dialled is trusted; one from another CA, an expired one, one for a client only, or one that names another
/// host is refused with a sentence saying why; client certificates prove their holder's identity.
/// </summary>
public sealed class PoolTlsTests
{
    private static readonly TimeSpan Year = TimeSpan.FromDays(365);
    private static readonly X509Certificate2 Ca = PoolCertificates.CreateAuthority("test pool", Year);
    private static readonly X509Certificate2 OtherCa = PoolCertificates.CreateAuthority("another pool", Year);

    private static X509Certificate2 Server(X509Certificate2 ca, string host = "127.0.0.1", PoolRole role = PoolRole.Broker, DateTimeOffset? notBefore = null, TimeSpan? lifetime = null)
        => PoolCertificates.Issue(ca, new PoolIdentity("b1", role), [host], lifetime ?? Year, notBefore);

    [Fact]
    public async Task A_server_certificate_of_the_pool_CA_naming_the_host_is_trusted_and_bytes_flow_both_ways()
    {
        var (client, server) = await HandshakeAsync(new PoolTls(Ca, Server(Ca)), new PoolTls(Public(Ca)));
        await using (client)
        await using (server)
        {
            await client.SendAsync("hello"u8.ToArray(), CancellationToken.None);
            var got = new byte[5];
            await server.ReceiveExactlyAsync(got, "client", CancellationToken.None);
            Assert.Equal("hello"u8.ToArray(), got);
            Assert.NotNull(client.Tls);
            Assert.True(client.Tls!.IsAuthenticated);
        }
    }

    [Fact]
    public async Task A_server_certificate_from_another_CA_is_refused_naming_the_pool_CA()
    {
        var error = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(new PoolTls(OtherCa, Server(OtherCa)), new PoolTls(Public(Ca))));
        Assert.Contains("is not issued by this pool's CA", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_expired_server_certificate_is_refused_saying_when_it_was_valid()
    {
        var expired = Server(Ca, notBefore: DateTimeOffset.UtcNow.AddDays(-10), lifetime: TimeSpan.FromDays(1));
        var error = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(new PoolTls(Ca, expired), new PoolTls(Public(Ca))));
        Assert.Contains("not now", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_certificate_for_another_host_is_refused_naming_the_host_dialled()
    {
        var error = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(new PoolTls(Ca, Server(Ca, host: "10.9.9.9")), new PoolTls(Public(Ca))));
        Assert.Contains("does not name the host it was dialled at (127.0.0.1)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_tenant_certificate_cannot_serve()
    {
        var tenant = PoolCertificates.Issue(Ca, new PoolIdentity("team-a", PoolRole.Tenant), [], Year);
        var error = await Assert.ThrowsAsync<AuthenticationException>(() => HandshakeAsync(new PoolTls(Ca, tenant), new PoolTls(Public(Ca))));
        Assert.Contains("is not for a server", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_certificate_proves_its_tenant_and_one_from_another_CA_is_refused_with_a_reason()
    {
        var serverTls = new PoolTls(Ca, Server(Ca));
        var tenant = PoolCertificates.Issue(Ca, new PoolIdentity("team-a", PoolRole.Tenant), [], Year);
        var (client, server) = await HandshakeAsync(serverTls, new PoolTls(Public(Ca), tenant));
        await using (client)
        await using (server)
        {
            var presented = server.Tls!.RemoteCertificate as X509Certificate2;
            Assert.Equal(new PoolIdentity("team-a", PoolRole.Tenant), serverTls.TryIdentify(presented, out var error));
            Assert.Null(error);
        }

        var stranger = PoolCertificates.Issue(OtherCa, new PoolIdentity("team-a", PoolRole.Admin), [], Year);
        Assert.Null(serverTls.TryIdentify(stranger, out var refused));
        Assert.Contains("is not issued by this pool's CA", refused, StringComparison.Ordinal);
        Assert.Null(serverTls.TryIdentify(null, out var none));
        Assert.Null(none);
    }

    [Fact]
    public void Issued_certificates_name_holder_and_role_and_bad_names_are_refused()
    {
        foreach (var role in Enum.GetValues<PoolRole>())
        {
            var issued = PoolCertificates.Issue(Ca, new PoolIdentity("x-1", role), ["h1"], Year);
            Assert.Equal(new PoolIdentity("x-1", role), PoolIdentity.FromCertificate(issued));
            Assert.True(PoolCertificates.Verify(issued, Ca, server: false, out var clientError), clientError);
            Assert.Equal(role is PoolRole.Broker or PoolRole.Scheduler or PoolRole.Store, PoolCertificates.Verify(issued, Ca, server: true, out _));
        }

        Assert.Throws<ArgumentException>(() => PoolCertificates.Issue(Ca, new PoolIdentity("a,O=gpupool admin", PoolRole.Tenant), [], Year));
        Assert.Throws<ArgumentException>(() => PoolCertificates.Issue(Public(Ca), new PoolIdentity("a", PoolRole.Tenant), [], Year));
        Assert.Null(PoolIdentity.FromCertificate(Ca));
    }

    [Fact]
    public void Certificates_and_keys_round_trip_through_PEM_files_and_keys_are_owner_only()
    {
        var dir = Directory.CreateTempSubdirectory("gpupool-pki-");
        try
        {
            var issued = Server(Ca);
            var cert = Path.Combine(dir.FullName, "b.crt");
            var key = Path.Combine(dir.FullName, "b.key");
            PoolCertificates.Write(issued, cert, key);
            var loaded = PoolCertificates.Load(cert, key);
            Assert.True(loaded.HasPrivateKey);
            Assert.Equal(issued.Thumbprint, loaded.Thumbprint);
            Assert.Equal(issued.Thumbprint, PoolCertificates.Load(cert).Thumbprint);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
            }

            var missing = Assert.Throws<ArgumentException>(() => PoolCertificates.Load(Path.Combine(dir.FullName, "none.crt")));
            Assert.Contains("none.crt", missing.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static X509Certificate2 Public(X509Certificate2 certificate) => X509CertificateLoader.LoadCertificate(certificate.RawData);

    /// <summary>A TLS handshake between two real ends over loopback TCP; the client dials 127.0.0.1.</summary>
    private static async Task<(FrameWire Client, FrameWire Server)> HandshakeAsync(PoolTls serverTls, PoolTls clientTls)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var clientSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await clientSocket.ConnectAsync(listener.LocalEndpoint);
        var serverSocket = await listener.AcceptSocketAsync();
        var serverSide = FrameWire.AcceptAsync(serverSocket, serverTls, TimeSpan.FromSeconds(10), CancellationToken.None);
        FrameWire client;
        try
        {
            client = await FrameWire.ConnectAsync(clientSocket, clientTls, "127.0.0.1", TimeSpan.FromSeconds(10), CancellationToken.None);
        }
        catch
        {
            // Under TLS 1.3 the server may finish its side before the client refuses; either way it is closed here.
            clientSocket.Dispose();
            serverSocket.Dispose();
            try
            {
                await (await serverSide).DisposeAsync();
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException)
            {
            }

            throw;
        }

        return (client, await serverSide);
    }
}
