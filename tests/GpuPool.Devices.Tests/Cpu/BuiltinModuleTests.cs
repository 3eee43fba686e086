using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Tests.Kernels;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>The built-in library's PTX (what the cuda backend hands the driver, and the image the cpu backend runs as C#) is the checked-in module, byte for byte.</summary>
public sealed class BuiltinModuleTests
{
    [Fact]
    public void The_embedded_PTX_resource_equals_the_checked_in_module()
    {
        var file = File.ReadAllBytes(NativeToolchain.CheckedInPtxPath);

        Assert.Equal(file, BuiltinModule.Image.ToArray());
    }

    [Fact]
    public void The_embedded_module_names_every_built_in_kernel_as_an_entry()
    {
        var text = System.Text.Encoding.UTF8.GetString(BuiltinModule.Image.Span);

        Assert.All(BuiltinKernels.All.Keys, name => Assert.Contains($".entry {name}(", text, StringComparison.Ordinal));
    }

    [Fact]
    public void A_client_image_is_the_built_in_library_only_when_it_is_the_same_text()
    {
        var image = BuiltinModule.Image.ToArray();
        var terminated = image.Append((byte)0).ToArray();
        var edited = (byte[])image.Clone();
        edited[^2] ^= 1;

        Assert.True(BuiltinModule.IsBuiltinImage(image));
        Assert.True(BuiltinModule.IsBuiltinImage(terminated));
        Assert.False(BuiltinModule.IsBuiltinImage(edited));
        Assert.False(BuiltinModule.IsBuiltinImage(image.AsSpan(0, image.Length - 10)));
    }
}
