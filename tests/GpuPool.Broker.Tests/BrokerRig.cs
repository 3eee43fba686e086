using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Broker.Leases;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices;
using GpuPool.Devices.Cpu;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests;

/// <summary>
/// What a broker runs against, all on one fake clock: an in-memory embedded store (whose sessions expire by that
/// clock), the scheduler's signing key, and one cpu device.
/// </summary>
internal sealed class BrokerRig : IAsyncDisposable
{
    public const string BrokerId = "b0";
    public const ulong MiB = 1UL << 20;

    private readonly ECDsa _schedulerKey = LeaseToken.CreateKey();
    private readonly CpuBackend _backend = new(deviceCount: 1, memoryPerDevice: 64 * MiB, slotsPerDevice: 1);

    public BrokerRig()
    {
        Store = new EmbeddedClusterStore(Clock);
        Options = new BrokerOptions
        {
            BrokerId = BrokerId,
            SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(_schedulerKey)),
            Backend = _backend,
            RegistrationTtl = TimeSpan.FromSeconds(3),
            TimeProvider = Clock,
        };
    }

    /// <summary>Years ahead of the machine's clock: a deadline or expiry read from the machine's clock instead would be long past.</summary>
    public ManualTimeProvider Clock { get; } = new(new DateTimeOffset(2040, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public EmbeddedClusterStore Store { get; }

    public BrokerOptions Options { get; }

    /// <summary>A lease record on this broker's device 0, as the scheduler writes it.</summary>
    public static LeaseRecord Lease(string leaseId) => new()
    {
        LeaseId = leaseId,
        Tenant = "t",
        BrokerId = BrokerId,
        DeviceIndex = 0,
        MemoryBytes = MiB,
        ComputeShare = 100,
        TtlSeconds = 30,
    };

    /// <summary>The record marked for preemption at <paramref name="deadline"/>, as the scheduler marks a victim.</summary>
    public static LeaseRecord Preempted(LeaseRecord lease, DateTimeOffset deadline)
    {
        var marked = lease.Clone();
        marked.PreemptDeadline = Timestamp.FromDateTimeOffset(deadline);
        marked.PreemptReason = "preempted by a request of priority class 'high' (tenant 'prod')";
        return marked;
    }

    public async Task PutAsync(LeaseRecord lease) => await Store.PutAsync(StoreKeys.Leases + lease.LeaseId, lease.ToByteArray());

    /// <summary>A token the scheduler would sign for <paramref name="lease"/>, good for <paramref name="lifetime"/> from now.</summary>
    public string Token(LeaseRecord lease, TimeSpan lifetime)
        => LeaseToken.Sign(
            new LeaseClaims(lease.LeaseId, lease.Tenant, lease.BrokerId, lease.DeviceIndex, lease.MemoryBytes, lease.ComputeShare, (Clock.GetUtcNow() + lifetime).ToUnixTimeMilliseconds()),
            _schedulerKey);

    /// <summary>
    /// <paramref name="lease"/> served on device 0, with a context of its own, as the lease table opens one when a
    /// session attaches; the caller disposes the context.
    /// </summary>
    public BrokerLease Serve(LeaseRecord lease)
    {
        var device = _backend.Devices[(int)lease.DeviceIndex];
        var claims = new LeaseClaims(lease.LeaseId, lease.Tenant, lease.BrokerId, lease.DeviceIndex, lease.MemoryBytes, lease.ComputeShare, (Clock.GetUtcNow() + TimeSpan.FromMinutes(1)).ToUnixTimeMilliseconds());
        return new BrokerLease(claims, device, device.CreateContext(new ContextOptions(lease.LeaseId, lease.MemoryBytes, (int)lease.ComputeShare)));
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        _backend.Dispose();
        _schedulerKey.Dispose();
    }
}
