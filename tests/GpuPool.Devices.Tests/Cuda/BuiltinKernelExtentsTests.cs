using System.Buffers.Binary;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Cuda;
using GpuPool.Devices.Tests.Cpu;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>
/// The ranges the cuda backend checks a built-in kernel's pointers over are the ranges the cpu backend's kernel bodies
/// resolve: for random launch arguments, buffers of exactly the cuda extents run on the cpu backend, and any buffer
/// one element short fails on both backends' checks, naming the same parameter.
/// </summary>
public sealed class BuiltinKernelExtentsTests
{
    public static TheoryData<string> Kernels => [.. BuiltinKernels.All.Keys.Order(StringComparer.Ordinal)];

    [Fact]
    public void Every_built_in_kernel_has_a_bounds_description_and_no_other_name_does()
        => Assert.Equal(BuiltinKernels.All.Keys.Order(StringComparer.Ordinal), BuiltinKernelExtents.All.Keys.Order(StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(Kernels))]
    public async Task Each_pointer_range_is_the_range_the_cpu_backend_resolves(string kernel)
    {
        var def = BuiltinKernels.All[kernel];
        var rng = new Random(kernel.Aggregate(23, (h, c) => (h * 31) + c));
        var ran = 0;
        for (var sample = 0; sample < 16; sample++)
        {
            var block = RandomArguments(def, rng);
            var counts = new long[Math.Max(1, def.Params.Length)];
            Array.Fill(counts, -1);
            try
            {
                BuiltinKernelExtents.All[kernel](new ParamReader(def, block), counts);
            }
            catch (DeviceException ex) when (ex.Code == DeviceErrorCode.InvalidArgument)
            {
                // Arguments that make no range (a negative dimension, a short leading dimension): refused on both backends.
                Assert.Equal(DeviceErrorCode.InvalidArgument, (await RunOnCpu(def, block, counts, shifted: -1))?.Code);
                continue;
            }

            var pointers = Enumerable.Range(0, def.Params.Length).Where(i => def.Params[i].Kind == ParamKind.Ptr).ToArray();
            Assert.All(pointers, i => Assert.True(counts[i] >= 0, $"{kernel}: no extent for pointer parameter {def.Params[i].Name}"));

            var exact = await RunOnCpu(def, block, counts, shifted: -1);
            if (exact is not null)
            {
                // The cpu backend refused the arguments for what they mean (an empty max, a row without columns): no bounds question.
                Assert.NotEqual(DeviceErrorCode.InvalidAddress, exact.Code);
                continue;
            }

            ran++;
            foreach (var i in pointers.Where(i => counts[i] > 0))
            {
                var onCpu = await RunOnCpu(def, block, counts, shifted: i);
                Assert.NotNull(onCpu);
                Assert.Equal(DeviceErrorCode.InvalidAddress, onCpu.Code);
                Assert.Contains($"kernel {kernel} parameter {def.Params[i].Name}", onCpu.Message, StringComparison.Ordinal);
            }
        }

        Assert.True(ran >= 3 || pointersOf(def) == 0, $"{kernel}: only {ran} of 16 random argument sets ran; the test says little");

        static int pointersOf(KernelDef d) => d.Params.Count(p => p.Kind == ParamKind.Ptr);
    }

    [Fact]
    public void A_pointer_one_element_past_its_allocation_fails_with_InvalidAddress_saying_by_how_much()
    {
        var def = BuiltinKernels.All["axpy_f32"];
        var memory = new AllocationTable();
        memory.Add(new Allocation(0x10000, 400, 0));
        memory.Add(new Allocation(0x20000, 396, 0));
        var block = new ParamPacker().U64(100).F32(2).Ptr(0x10000).Ptr(0x20000).ToArray();

        var error = Assert.Throws<DeviceException>(() => BuiltinKernelExtents.Check(def, block, memory));

        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Equal("kernel axpy_f32 parameter y: 0x20000 + 400 bytes runs past the end of its allocation (0x20000, 396 bytes) by 4 bytes", error.Message);
    }

    [Fact]
    public void A_pointer_to_another_leases_memory_is_not_inside_any_allocation_of_this_lease()
    {
        var memory = new AllocationTable();
        memory.Add(new Allocation(0x10000, 4096, 0));
        var block = new ParamPacker().U64(4).F32(1).Ptr(0x7f00_0000_0000).ToArray();

        var error = Assert.Throws<DeviceException>(() => BuiltinKernelExtents.Check(BuiltinKernels.All["fill_f32"], block, memory));

        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Equal("kernel fill_f32 parameter y: 0x7f0000000000 is not inside any allocation of this lease", error.Message);
    }

    [Fact]
    public void A_misaligned_pointer_is_refused_and_a_pointer_to_no_elements_is_not_looked_at()
    {
        var memory = new AllocationTable();
        memory.Add(new Allocation(0x10000, 64, 0));

        var misaligned = Assert.Throws<DeviceException>(() => BuiltinKernelExtents.Check(BuiltinKernels.All["fill_f32"], new ParamPacker().U64(2).F32(1).Ptr(0x10002).ToArray(), memory));
        BuiltinKernelExtents.Check(BuiltinKernels.All["fill_f32"], new ParamPacker().U64(0).F32(1).Ptr(0xdead_0000).ToArray(), memory);

        Assert.Equal(DeviceErrorCode.InvalidAddress, misaligned.Code);
        Assert.Contains("not aligned to 4 bytes", misaligned.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_negative_dimension_is_refused_naming_the_parameter()
    {
        var block = new ParamPacker().I32(3).I32(-1).Ptr(0).Ptr(0).ToArray();

        var error = Assert.Throws<DeviceException>(() => BuiltinKernelExtents.Check(BuiltinKernels.All["softmax_rows_f32"], block, new AllocationTable()));

        Assert.Equal(DeviceErrorCode.InvalidArgument, error.Code);
        Assert.Equal("kernel softmax_rows_f32 parameter cols: -1 is negative", error.Message);
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>Small random scalars (dimensions 0..5, counts 0..39, leading dimensions 0..11); pointers are filled in per run.</summary>
    private static byte[] RandomArguments(KernelDef def, Random rng)
    {
        var block = new byte[def.ParamBytes];
        for (var i = 0; i < def.Params.Length; i++)
        {
            var at = block.AsSpan(def.Offsets[i]);
            switch (def.Params[i].Kind)
            {
                case ParamKind.I32:
                    BinaryPrimitives.WriteInt32LittleEndian(at, def.Params[i].Name.StartsWith("ld", StringComparison.Ordinal) ? rng.Next(0, 12) : rng.Next(0, 6));
                    break;
                case ParamKind.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(at, 0.5f);
                    break;
                case ParamKind.U64:
                    BinaryPrimitives.WriteUInt64LittleEndian(at, (ulong)rng.Next(0, 40));
                    break;
            }
        }

        return block;
    }

    /// <summary>
    /// Runs the kernel on the cpu backend with every pointer given a zeroed buffer of exactly its cuda extent, except
    /// pointer <paramref name="shifted"/>, passed one element into its buffer so its range runs 4 bytes past the end.
    /// Checks the cuda bounds check says the same of that range. Returns the cpu backend's error, or null.
    /// </summary>
    private static async Task<DeviceException?> RunOnCpu(KernelDef def, byte[] arguments, long[] counts, int shifted)
    {
        var device = Dev.Device(memory: 64 * Dev.MiB);
        await using var context = Dev.Context(device, limit: 32 * Dev.MiB);
        var block = (byte[])arguments.Clone();
        var table = new AllocationTable();
        for (var i = 0; i < def.Params.Length; i++)
        {
            if (def.Params[i].Kind != ParamKind.Ptr)
            {
                continue;
            }

            var bytes = (ulong)Math.Max(1, counts[i]) * 4;
            var pointer = context.Allocate(bytes);
            table.Add(new Allocation(pointer, bytes, 0));
            BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(def.Offsets[i]), pointer + (i == shifted ? 4UL : 0UL));
        }

        context.EnqueueLaunch(0, Dev.Function(context, def.Name), Dev.Dims, block, Dev.Tag("launch"));
        await Dev.Within(context.SynchronizeAsync());
        var error = context.TakeError()?.Error;

        if (shifted >= 0)
        {
            var cuda = Assert.Throws<DeviceException>(() => BuiltinKernelExtents.Check(def, block, table));
            Assert.Equal(DeviceErrorCode.InvalidAddress, cuda.Code);
            Assert.Contains($"kernel {def.Name} parameter {def.Params[shifted].Name}", cuda.Message, StringComparison.Ordinal);
        }
        else if (error is null)
        {
            BuiltinKernelExtents.Check(def, block, table);
        }

        return error;
    }
}
