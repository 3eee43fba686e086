using System.Buffers.Binary;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>Packs kernel parameters as cuLaunchKernel lays them out: each value at an offset aligned to its size.</summary>
internal sealed class ParamPacker
{
    private readonly List<byte> _bytes = [];

    public List<int> Offsets { get; } = [];

    public int Length => _bytes.Count;

    public ParamPacker I32(int value) => Put(4, b => BinaryPrimitives.WriteInt32LittleEndian(b, value));

    public ParamPacker F32(float value) => Put(4, b => BinaryPrimitives.WriteSingleLittleEndian(b, value));

    public ParamPacker U64(ulong value) => Put(8, b => BinaryPrimitives.WriteUInt64LittleEndian(b, value));

    public ParamPacker Ptr(ulong address) => U64(address);

    public byte[] ToArray() => [.. _bytes];

    private ParamPacker Put(int size, SpanAction write)
    {
        while (_bytes.Count % size != 0)
        {
            _bytes.Add(0);
        }

        Offsets.Add(_bytes.Count);
        Span<byte> value = stackalloc byte[size];
        write(value);
        _bytes.AddRange(value.ToArray());
        return this;
    }

    private delegate void SpanAction(Span<byte> destination);
}

/// <summary>Small helpers for driving a context the way the broker does.</summary>
internal static class Dev
{
    public const ulong MiB = 1 << 20;

    public static readonly LaunchDims Dims = ContextOps.Dims;

    public static CpuDevice Device(ulong memory = 256 * MiB, int slots = 2) => new(0, memory, slots);

    public static DeviceContext Context(CpuDevice device, ulong limit = 16 * MiB, string lease = "lease-a", int share = 500)
        => (DeviceContext)device.CreateContext(new ContextOptions(lease, limit, share));

    public static OpTag Tag(string op) => ContextOps.Tag(op);

    public static ulong Upload<T>(IDeviceContext context, T[] values, ulong stream = 0)
        where T : unmanaged
        => ContextOps.Upload(context, values, stream);

    public static Task<T[]> DownloadAsync<T>(IDeviceContext context, ulong ptr, int count, ulong stream = 0)
        where T : unmanaged
        => ContextOps.DownloadAsync<T>(context, ptr, count, stream);

    public static ulong Function(IDeviceContext context, string kernel) => ContextOps.Function(context, kernel);

    public static void Launch(IDeviceContext context, ulong stream, string kernel, ParamPacker args, string op = "launch")
        => context.EnqueueLaunch(stream, Function(context, kernel), Dims, args.ToArray(), Tag(op));

    public static void Axpy(IDeviceContext context, ulong stream, float alpha, ulong x, ulong y, int n)
        => Launch(context, stream, "axpy_f32", new ParamPacker().U64((ulong)n).F32(alpha).Ptr(x).Ptr(y));

    public static Task<T> Within<T>(Task<T> task) => ContextOps.Within(task);

    public static Task Within(Task task) => ContextOps.Within(task);

    public static Task Within(ValueTask wait) => ContextOps.Within(wait);
}
