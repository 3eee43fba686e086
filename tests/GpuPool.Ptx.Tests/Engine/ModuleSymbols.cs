using System.Globalization;
using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Tests.Engine;

internal static class ModuleSymbols
{
    /// <summary>
    /// The module's variables as a loader gives them: each allocated, its initializer (nvcc and clang write them as bytes)
    /// copied in, their addresses in the order of <see cref="PtxModuleProgram.Variables"/>.
    /// </summary>
    public static ulong[] Place(string ptx, PtxModuleProgram module, HostMemory memory)
    {
        var variables = PtxParser.Parse(ptx).Variables.ToDictionary(v => v.Name);
        return module.Variables.Select(name =>
        {
            var v = variables[name];
            var bytes = new byte[v.Bytes];
            if (v.Initializer is { } text)
            {
                Assert.True(v.Type is "b8" or "u8", $"variable {name}: an initializer of .{v.Type}");
                var values = text.Trim().TrimStart('{').TrimEnd('}').Split(',').Select(b => byte.Parse(b, CultureInfo.InvariantCulture)).ToArray();
                values.CopyTo(bytes, 0);
            }

            return memory.Upload(bytes);
        }).ToArray();
    }
}
