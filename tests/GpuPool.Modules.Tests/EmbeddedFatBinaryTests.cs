using System.Buffers.Binary;
using GpuPool.Modules.Elf;
using GpuPool.Modules.Fatbin;

namespace GpuPool.Modules.Tests;

/// <summary>
/// What nvcc embeds in a program linked with the static CUDA runtime: containers back to back in .nv_fatbin, and in
/// .nvFatBinSegment the __fatBinC_Wrapper_t (magic, version, pointer to a container, pointer) that the runtime registers.
/// </summary>
public sealed class EmbeddedFatBinaryTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    private const int WrapperBytes = 24;

    [Fact]
    public void The_program_holds_containers_back_to_back_and_each_wrapper_points_at_one()
    {
        var program = File.ReadAllBytes(nvcc.PathOf("app", "app.cu", ["-cudart", "static", .. Images.SassAndPtx]));
        var elf = ElfFile.Read(program);
        var fatbin = elf.Find(".nv_fatbin") ?? throw new InvalidOperationException("no .nv_fatbin section");
        var segment = elf.Find(".nvFatBinSegment") ?? throw new InvalidOperationException("no .nvFatBinSegment section");
        var containers = elf.Data(fatbin).ToArray();
        var wrappers = elf.Data(segment).ToArray();

        Assert.True(FatBinary.Read(containers).Max(e => e.Container) >= 1, "expected more than one container in .nv_fatbin");
        Assert.Equal(0, wrappers.Length % WrapperBytes);
        var modules = new List<ModuleImage>();
        for (var at = 0; at < wrappers.Length; at += WrapperBytes)
        {
            var wrapper = wrappers.AsSpan(at, WrapperBytes);
            Assert.Equal(FatBinary.WrapperMagic, BinaryPrimitives.ReadUInt32LittleEndian(wrapper));
            Assert.InRange(BinaryPrimitives.ReadUInt32LittleEndian(wrapper[4..]), 1u, 2u);

            // What the shim does with a registered wrapper: follow the pointer, size the container from its header, copy it.
            var offset = checked((int)(BinaryPrimitives.ReadUInt64LittleEndian(wrapper[8..]) - fatbin.Address));
            var size = FatBinary.SizeFromHeader(containers.AsSpan(offset, FatBinary.HeaderBytes));
            modules.Add(ModuleImage.Read(containers.AsSpan(offset, (int)size)));
        }

        var scale = Assert.Single(modules, m => m.Kernels.ContainsKey("scale")).Kernels["scale"];
        Assert.Equal([8, 4], scale.Params.Select(p => p.Size));
    }
}
