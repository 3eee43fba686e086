using System.Security.Cryptography;
using GpuPool.Devices;
using GpuPool.Protocol.Hosts;

namespace GpuPool.Broker;

/// <summary>How a broker runs: who it is, where it listens, whose tokens it trusts, and its limits.</summary>
public sealed class BrokerOptions
{
    /// <summary>Unique in the pool; by default <see cref="DefaultBrokerId"/>: the host name and a short machine id.</summary>
    public string BrokerId { get; set; } = DefaultBrokerId();

    /// <summary>Address to listen on: one of the host's, or 0.0.0.0 or :: for all of them. Port 0 picks a free port.</summary>
    public string ListenAddress { get; set; } = "127.0.0.1";

    /// <summary>
    /// The host (an address or a DNS name) the broker registers for its gRPC URL and its fast path, so that clients
    /// on other hosts dial it. Null: the listen address when it is a specific one, else this host's address on the
    /// default route (<see cref="AdvertisedAddress.Choose"/>). A wildcard address is never registered.
    /// </summary>
    public string? AdvertiseAddress { get; set; }

    /// <summary>
    /// Where the broker keeps what it must remember across restarts: today only a machine id it made up, on a
    /// machine that has none of its own (no /etc/machine-id). Null: /tmp.
    /// </summary>
    public string? StateDirectory { get; set; }

    public int Port { get; set; } = 7071;

    /// <summary>
    /// Port of the raw fast path (TCP); 0 (the default) picks a free port — clients learn it from the
    /// broker's record — and -1 serves no fast path.
    /// </summary>
    public int FastPathPort { get; set; }

    /// <summary>
    /// Unix socket of the fast path for clients on this host; null picks a path in the temp folder, ""
    /// serves none.
    /// </summary>
    public string? FastPathUnixSocket { get; set; }

    /// <summary>
    /// How long a gRPC connection with no call in flight stays open (one that never sends anything too); a client
    /// reconnects when it next calls. Its TLS handshake gets at most 10 s of it.
    /// </summary>
    public TimeSpan IdleConnectionTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a new fast-path connection may take to send its hello frame (and, with TLS, finish its handshake).</summary>
    public TimeSpan FastPathHelloTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How many extra data connections one fast-path session may join, to stripe large copies over (0: none; at
    /// most 31, the first connection being the 32nd).
    /// </summary>
    public int FastPathMaxDataConnections { get; set; } = 7;

    /// <summary>
    /// Bytes of copies to the device one fast-path connection may hold in staging while their stream is busy;
    /// past it the broker stops reading that connection until staged chunks have gone to the device.
    /// </summary>
    public long FastPathStagingBytes { get; set; } = 16 << 20;

    /// <summary>
    /// TLS with the pool's CA on the gRPC port and the TCP fast path (its own certificate must be a broker's, naming the
    /// host it is dialled at): the broker registers an https:// endpoint, and clients wrap the fast path in TLS too. The
    /// Unix socket, which never leaves the host, stays plaintext. Null serves both in plaintext (<c>--insecure</c>).
    /// </summary>
    public GpuPool.Protocol.Security.PoolTls? Tls { get; set; }

    /// <summary>The scheduler's public key: only tokens it signed open sessions.</summary>
    public required ECDsa SchedulerPublicKey { get; set; }

    public required IDeviceBackend Backend { get; set; }

    /// <summary>Largest gRPC message the broker accepts; bigger ones end the call with ResourceExhausted.</summary>
    public int MaxMessageBytes { get; set; } = 16 << 20;

    /// <summary>
    /// Largest module image a session may send in pieces (a library's fat binary larger than one message: cuBLAS 11.8
    /// registers one of 23 MB); it is held in the broker's memory until it loads, and no larger than the lease's memory.
    /// </summary>
    public int MaxModuleBytes { get; set; } = 256 << 20;

    /// <summary>Chunk size of device-to-host replies; 0 picks 1 MiB, or less when the message limit is smaller.</summary>
    public int ReplyChunkBytes { get; set; }

    internal int EffectiveReplyChunkBytes => ReplyChunkBytes > 0 ? ReplyChunkBytes : Math.Min(1 << 20, MaxMessageBytes / 2);

    /// <summary>
    /// Chunk size of device-to-host replies on the fast path, which are sent from device memory and received into the
    /// caller's buffer, so a larger frame costs no buffer: 4 MiB unless <see cref="ReplyChunkBytes"/> says otherwise.
    /// </summary>
    internal int EffectiveFastPathReplyChunkBytes => ReplyChunkBytes > 0 ? ReplyChunkBytes : Math.Min(4 << 20, MaxMessageBytes / 2);

    /// <summary>Time to live of the broker's registration; its heartbeat renews it at a third of this (see <see cref="HeartbeatInterval"/>).</summary>
    public TimeSpan RegistrationTtl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How often the heartbeat renews the registration and refreshes the memory in use its record shows; null: a
    /// third of <see cref="RegistrationTtl"/>. Shorter than the TTL, so that a heartbeat late by a few periods (a host
    /// whose cores a kernel holds) does not drop a live broker and every lease on it.
    /// </summary>
    public TimeSpan? HeartbeatInterval { get; set; }

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// The id a broker takes when none is given: this host's name (lower case, other characters as '-') and the first
    /// six hex digits of its machine id, so that two hosts that share a host name still get different ids, and one
    /// host gets the same id at every start.
    /// </summary>
    public static string DefaultBrokerId(string? stateDirectory = null) => DefaultBrokerId(Environment.MachineName, MachineIdentity.Get(stateDirectory));

    internal static string DefaultBrokerId(string hostName, string machineId)
    {
        var host = new string([.. hostName.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '-')]);
        if (host.Length is 0 or > 100)
        {
            host = host.Length == 0 ? "broker" : host[..100];
        }

        return $"{host}-{machineId[..Math.Min(6, machineId.Length)]}";
    }

    internal void Validate()
    {
        if (string.IsNullOrEmpty(BrokerId) || BrokerId.Length > 128 || BrokerId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new ArgumentException($"BrokerId '{BrokerId}' must be 1-128 letters, digits, '-', '_' or '.'", nameof(BrokerId));
        }

        if (!AdvertisedAddress.TryParseListen(ListenAddress, out _, out var listenError))
        {
            throw new ArgumentException(listenError, nameof(ListenAddress));
        }

        if (AdvertiseAddress is not null && AdvertisedAddress.CheckAdvertise(AdvertiseAddress) is { } advertiseError)
        {
            throw new ArgumentException(advertiseError, nameof(AdvertiseAddress));
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentException($"Port {Port} is not a TCP port", nameof(Port));
        }

        if (FastPathPort is < -1 or > 65535)
        {
            throw new ArgumentException($"FastPathPort {FastPathPort} is not a TCP port (or -1 for none)", nameof(FastPathPort));
        }

        if (FastPathMaxDataConnections is < 0 or > 31)
        {
            throw new ArgumentException($"FastPathMaxDataConnections {FastPathMaxDataConnections} must be between 0 and 31", nameof(FastPathMaxDataConnections));
        }

        if (FastPathStagingBytes < 1 << 20)
        {
            throw new ArgumentException($"FastPathStagingBytes {FastPathStagingBytes} is below the 1 MiB minimum", nameof(FastPathStagingBytes));
        }

        if (HeartbeatInterval is { } heartbeat && (heartbeat <= TimeSpan.Zero || heartbeat >= RegistrationTtl))
        {
            throw new ArgumentException($"HeartbeatInterval {heartbeat} must be positive and shorter than RegistrationTtl {RegistrationTtl}", nameof(HeartbeatInterval));
        }

        if (MaxMessageBytes < 64 * 1024)
        {
            throw new ArgumentException($"MaxMessageBytes {MaxMessageBytes} is below the 64 KiB minimum", nameof(MaxMessageBytes));
        }

        if (MaxModuleBytes < MaxMessageBytes)
        {
            throw new ArgumentException($"MaxModuleBytes {MaxModuleBytes} is below MaxMessageBytes {MaxMessageBytes}", nameof(MaxModuleBytes));
        }

        if (ReplyChunkBytes != 0 && (ReplyChunkBytes < 4096 || ReplyChunkBytes > MaxMessageBytes - 1024))
        {
            throw new ArgumentException($"ReplyChunkBytes {ReplyChunkBytes} must be between 4 KiB and MaxMessageBytes less 1 KiB", nameof(ReplyChunkBytes));
        }
    }
}
