using System.Buffers;
using GpuPool.Protocol.Transport;
using Microsoft.AspNetCore.Connections;

namespace GpuPool.Broker.Hosting;

/// <summary>
/// The memory of the broker's Kestrel (its gRPC connections): blocks of <see cref="BlockSize"/> bytes instead of
/// Kestrel's 4 KiB. Kestrel reads a socket into one block at a time, so with 4 KiB blocks a copy to the device
/// over the gRPC op stream took a receive system call per 4 KiB, most of the broker's time on it; with 64 KiB
/// blocks it takes about a twentieth as many.
/// </summary>
internal sealed class KestrelBlockPoolFactory : IMemoryPoolFactory<byte>
{
    public const int BlockSize = 64 * 1024;

    /// <summary>Idle blocks a pool keeps (16 MiB); more are left to the GC.</summary>
    private const int MaxRetained = 256;

    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new BlockMemoryPool(BlockSize, MaxRetained);
}
