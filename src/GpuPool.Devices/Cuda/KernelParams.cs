using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Cuda;

/// <summary>Where each parameter of a kernel sits in the packed parameter block a launch carries (cuLaunchKernel's layout).</summary>
internal sealed class ParamLayout
{
    public ParamLayout(int[] offsets, int[] sizes)
    {
        if (offsets.Length != sizes.Length)
        {
            throw new ArgumentException("a layout needs one size per offset", nameof(sizes));
        }

        Offsets = offsets;
        Sizes = sizes;
        for (var i = 0; i < offsets.Length; i++)
        {
            Bytes = Math.Max(Bytes, offsets[i] + sizes[i]);
        }
    }

    public int[] Offsets { get; }

    public int[] Sizes { get; }

    public int Count => Offsets.Length;

    /// <summary>The size of the whole block: the end of the parameter that ends last.</summary>
    public int Bytes { get; }

    public static ParamLayout Of(KernelDef kernel) => new(kernel.Offsets, [.. kernel.Params.Select(p => p.Size)]);
}

/// <summary>Builds the <c>void**</c> that cuLaunchKernel takes: one pointer per parameter, to its value inside the packed block.</summary>
internal static unsafe class KernelParams
{
    /// <summary>
    /// Sets <c>pointers[i] = block + offset of parameter i</c>. The driver copies each value (of the size the kernel
    /// declares) through its pointer while cuLaunchKernel runs, so the block must stay pinned only for that call.
    /// </summary>
    public static void Build(byte* block, int blockLength, ParamLayout layout, Span<nint> pointers)
    {
        if (pointers.Length != layout.Count)
        {
            throw new ArgumentException($"{layout.Count} parameters need {layout.Count} pointers, not {pointers.Length}", nameof(pointers));
        }

        for (var i = 0; i < layout.Count; i++)
        {
            int offset = layout.Offsets[i], size = layout.Sizes[i];
            if (offset < 0 || size < 0 || (long)offset + size > blockLength)
            {
                throw new DeviceException(DeviceErrorCode.InvalidArgument,
                    $"kernel parameter {i} ({size} bytes at offset {offset}) lies outside the {blockLength}-byte parameter block");
            }

            pointers[i] = (nint)(block + offset);
        }
    }
}
