using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Cuda;
using GpuPool.Devices.Tests.Cpu;

namespace GpuPool.Devices.Tests.Cuda;

/// <summary>The void** that cuLaunchKernel reads parameters through, built over a packed block in managed memory.</summary>
public sealed unsafe class KernelParamsTests
{
    public static TheoryData<string> Kernels => [.. BuiltinKernels.All.Keys.Order(StringComparer.Ordinal)];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Each_pointer_leads_to_its_parameters_value_in_the_packed_block(string kernel)
    {
        var def = BuiltinKernels.All[kernel];
        var packer = new ParamPacker();
        var expected = new List<ulong>();
        for (var i = 0; i < def.Params.Length; i++)
        {
            var value = 0x0101_0101_0000_0000UL * (ulong)(i + 1) + (ulong)(i + 7);
            _ = def.Params[i].Kind switch
            {
                ParamKind.I32 => packer.I32((int)(value & 0x7fff_ffff)),
                ParamKind.F32 => packer.F32(i + 0.5f),
                _ => packer.U64(value),
            };
            expected.Add(def.Params[i].Kind switch
            {
                ParamKind.I32 => value & 0x7fff_ffff,
                ParamKind.F32 => (ulong)BitConverter.SingleToUInt32Bits(i + 0.5f),
                _ => value,
            });
        }

        var block = packer.ToArray();
        var pointers = new nint[def.Params.Length];
        fixed (byte* start = block)
        {
            KernelParams.Build(start, block.Length, ParamLayout.Of(def), pointers);

            for (var i = 0; i < def.Params.Length; i++)
            {
                Assert.Equal(def.Offsets[i], (int)(pointers[i] - (nint)start));
                var read = def.Params[i].Size == 4 ? *(uint*)pointers[i] : *(ulong*)pointers[i];
                Assert.Equal(expected[i], read);
            }
        }
    }

    [Fact]
    public void Gemm_pointers_after_4_byte_parameters_point_at_8_byte_aligned_offsets()
    {
        var layout = ParamLayout.Of(BuiltinKernels.All["gemm_f32"]);

        Assert.Equal(68, layout.Bytes);
        Assert.Equal([0, 4, 8, 12, 16, 20, 24, 32, 40, 48, 52, 56, 64], layout.Offsets);
        Assert.Equal([4, 4, 4, 4, 4, 4, 8, 4, 8, 4, 4, 8, 4], layout.Sizes);
    }

    [Fact]
    public void A_kernel_without_parameters_needs_no_pointers()
    {
        var layout = ParamLayout.Of(BuiltinKernels.All["noop"]);

        KernelParams.Build(null, 0, layout, []);

        Assert.Equal(0, layout.Bytes);
    }

    [Fact]
    public void A_layout_reaching_past_the_block_is_refused_naming_the_parameter()
    {
        var layout = new ParamLayout([0, 8], [8, 8]);
        var block = new byte[12];
        var pointers = new nint[2];

        var error = Assert.Throws<DeviceException>(() =>
        {
            fixed (byte* start = block)
            {
                KernelParams.Build(start, block.Length, layout, pointers);
            }
        });

        Assert.Equal(DeviceErrorCode.InvalidArgument, error.Code);
        Assert.Equal("kernel parameter 1 (8 bytes at offset 8) lies outside the 12-byte parameter block", error.Message);
    }

    [Fact]
    public void The_pointer_array_must_have_one_slot_per_parameter()
    {
        var layout = new ParamLayout([0], [8]);
        var block = new byte[8];

        Assert.Throws<ArgumentException>(() =>
        {
            fixed (byte* start = block)
            {
                KernelParams.Build(start, block.Length, layout, new nint[2]);
            }
        });
    }

    [Fact]
    public void A_layout_from_the_driver_is_as_long_as_its_last_parameter_reaches()
    {
        // cuFuncGetParamInfo may list parameters in any order; a struct parameter is one entry of its own size.
        var layout = new ParamLayout([16, 0, 8], [4, 8, 8]);

        Assert.Equal(20, layout.Bytes);
        Assert.Equal(3, layout.Count);
        Assert.Equal(0x11223344u, ReadThrough(layout, 0, 0x11223344u));
    }

    private static uint ReadThrough(ParamLayout layout, int index, uint value)
    {
        var block = new byte[layout.Bytes];
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(layout.Offsets[index]), value);
        var pointers = new nint[layout.Count];
        var handle = GCHandle.Alloc(block, GCHandleType.Pinned);
        try
        {
            KernelParams.Build((byte*)handle.AddrOfPinnedObject(), block.Length, layout, pointers);
            return *(uint*)pointers[index];
        }
        finally
        {
            handle.Free();
        }
    }
}
