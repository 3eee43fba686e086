using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuPool.Modules.Ptx;

namespace GpuPool.Modules.Tests;

/// <summary>Module-scope variables read from PTX: what a backend allocates and initializes when it loads the module.</summary>
public sealed class PtxVariablesTests
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n";

    private static ModuleVariable Only(string body) => Assert.Single(PtxVariables.Parse(Header + body));

    private static byte[] Bytes<T>(params T[] values)
        where T : unmanaged
        => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    [Fact]
    public void Nvcc_output_gives_each_variable_its_size_alignment_space_and_host_layout()
    {
        var ptx = Nvcc.CompileToPtx("""
            #include <cstdint>
            struct S { float a; int b; double c; };
            __device__ float x[10];
            __device__ float y = 2.5f;
            __constant__ float c[4] = {1.0f, 2.0f, 3.0f, 4.0f};
            __device__ int partial[100] = {1, 2};
            __device__ double d = 3.25;
            __device__ uint64_t big = 0xFFFFFFFFFFFFFFFFull;
            __device__ int neg = -7;
            __device__ S s = {1.5f, -2, 4.0};
            __device__ char msg[] = "hello";
            __constant__ int2 v2 = {3, 4};
            __device__ short sh[3] = {1, -1, 2};
            __device__ int mat[2][3] = {{1, 2, 3}, {4}};
            __global__ void k(float* out)
            {
                out[0] = x[0] + y + c[1] + partial[3] + d + big + neg + s.a + msg[0] + v2.x + sh[1] + mat[1][1];
            }
            """);

        var v = PtxVariables.Parse(ptx).ToDictionary(v => v.Name);

        Assert.Equal(["big", "c", "d", "mat", "msg", "neg", "partial", "s", "sh", "v2", "x", "y"], v.Keys.Order(StringComparer.Ordinal));
        Assert.Equal((40L, 4, VariableSpace.Global), (v["x"].Size, v["x"].Align, v["x"].Space));
        Assert.Empty(v["x"].Initializer);
        Assert.Equal(Bytes(2.5f), v["y"].Initializer);
        Assert.Equal((16L, 4, VariableSpace.Const), (v["c"].Size, v["c"].Align, v["c"].Space));
        Assert.Equal(Bytes(1f, 2f, 3f, 4f), v["c"].Initializer);
        Assert.Equal(Bytes<int>([1, 2, .. new int[98]]), v["partial"].Initializer);
        Assert.Equal((8L, 8), (v["d"].Size, v["d"].Align));
        Assert.Equal(Bytes(3.25), v["d"].Initializer);
        Assert.Equal(Bytes(ulong.MaxValue), v["big"].Initializer);
        Assert.Equal(Bytes(-7), v["neg"].Initializer);
        Assert.Equal((16L, 8), (v["s"].Size, v["s"].Align));
        Assert.Equal([.. Bytes(1.5f), .. Bytes(-2), .. Bytes(4.0)], v["s"].Initializer);
        Assert.Equal("hello\0"u8.ToArray(), v["msg"].Initializer);
        Assert.Equal((VariableSpace.Const, 8), (v["v2"].Space, v["v2"].Align));
        Assert.Equal(Bytes(3, 4), v["v2"].Initializer);
        Assert.Equal(Bytes<short>(1, -1, 2), v["sh"].Initializer);
        Assert.Equal(Bytes(1, 2, 3, 4, 0, 0), v["mat"].Initializer);
        Assert.All(v.Values, x => Assert.True(x.Initializer.Length == 0 || x.Initializer.Length == x.Size, x.Name));
    }

    [Fact]
    public void A_pointer_that_nvcc_initializes_with_an_address_is_refused_naming_it()
    {
        var ptx = Nvcc.CompileToPtx("""
            __device__ int target = 1;
            __device__ int* ptr = &target;
            __global__ void k(int* out) { out[0] = *ptr; }
            """);

        var e = Assert.Throws<PtxFormatException>(() => PtxVariables.Parse(ptx));

        Assert.Contains("module variable 'ptr'", e.Message, StringComparison.Ordinal);
        Assert.Contains("generic(target)", e.Message, StringComparison.Ordinal);
        Assert.Contains("address of another symbol", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Clang_output_gives_its_visible_table()
    {
        var ptx = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Ptx", "clang14_sample.ptx"));

        var table = Assert.Single(PtxVariables.Parse(ptx));

        Assert.Equal(new ModuleVariable("table", 16, 4, VariableSpace.Global, table.Initializer), table);
        Assert.Equal(Bytes(1, 2, 3, 4), table.Initializer);
    }

    [Fact]
    public void Extern_declarations_are_another_modules_variables()
    {
        var vars = PtxVariables.Parse(Header + """
            .extern .global .align 4 .u32 elsewhere;
            .extern .const .align 4 .b8 table[];
            .visible .global .align 4 .u32 here;
            .weak .global .align 8 .u64 weakling = 5;
            .global .u32 plain;
            """);

        Assert.Equal(["here", "weakling", "plain"], vars.Select(v => v.Name));
        Assert.Equal(Bytes(5UL), vars[1].Initializer);
        Assert.Equal(4, vars[2].Align);
    }

    [Fact]
    public void Parameter_spaces_function_bodies_and_debug_sections_declare_no_variables()
    {
        var vars = PtxVariables.Parse(Header + """
            .visible .global .align 4 .f32 scale = 0f3F800000;
            .extern .func (.param .b32 func_retval0) vprintf(.param .b64 fmt, .param .b64 args);
            .visible .entry k(.param .u64 .ptr .global .align 4 out, .param .u64 .ptr .const p)
            {
            	.reg .f32 %f<2>;
            	.shared .align 4 .b8 tile[64];
            	ld.global.f32 %f1, [scale];
            	st.global.f32 [out], %f1;
            	ret;
            }
            .global .texref tex;
            .section .debug_info { .b32 1 .b8 2 }
            """);

        Assert.Equal(Bytes(1f), Assert.Single(vars).Initializer);
    }

    [Fact]
    public void Several_declarators_share_one_type()
    {
        var vars = PtxVariables.Parse(Header + ".global .align 8 .u32 a = 1, b[3] = {2, 3}, c;");

        Assert.Equal(["a", "b", "c"], vars.Select(v => v.Name));
        Assert.Equal(Bytes(1u), vars[0].Initializer);
        Assert.Equal(Bytes(2u, 3u, 0u), vars[1].Initializer);
        Assert.Equal((4L, 8), (vars[2].Size, vars[2].Align));
        Assert.Empty(vars[2].Initializer);
    }

    [Theory]
    [InlineData(".global .u32 x = 0x1F;", new byte[] { 0x1F, 0, 0, 0 })]
    [InlineData(".global .u32 x = 017;", new byte[] { 15, 0, 0, 0 })]
    [InlineData(".global .u32 x = 0b101;", new byte[] { 5, 0, 0, 0 })]
    [InlineData(".global .u32 x = 4294967295U;", new byte[] { 255, 255, 255, 255 })]
    [InlineData(".global .s16 x = -2;", new byte[] { 254, 255 })]
    [InlineData(".global .b8 x[2] = {255, -1};", new byte[] { 255, 255 })]
    [InlineData(".global .f32 x = 1.5;", new byte[] { 0, 0, 0xC0, 0x3F })]
    [InlineData(".global .f32 x = 2;", new byte[] { 0, 0, 0, 0x40 })]
    [InlineData(".global .f32 x = 2.5e+1;", new byte[] { 0, 0, 0xC8, 0x41 })]
    [InlineData(".global .f32 x = 0d3FF8000000000000;", new byte[] { 0, 0, 0xC0, 0x3F })]
    [InlineData(".global .f64 x = 0f3FC00000;", new byte[] { 0, 0, 0, 0, 0, 0, 0xF8, 0x3F })]
    [InlineData(".global .f16 x = 0x3C00;", new byte[] { 0x00, 0x3C })]
    [InlineData(".global .f16 x = 0f3FC00000;", new byte[] { 0x00, 0x3E })]
    [InlineData(".global .bf16 x = 0f3FC00000;", new byte[] { 0xC0, 0x3F })]
    [InlineData(".global .b64 x = -1;", new byte[] { 255, 255, 255, 255, 255, 255, 255, 255 })]
    public void Literals_are_written_little_endian_in_the_variables_type(string declaration, byte[] expected)
        => Assert.Equal(expected, Only(declaration).Initializer);

    [Fact]
    public void Vectors_arrays_without_a_size_and_nested_braces_are_laid_out_as_in_C()
    {
        var vars = PtxVariables.Parse(Header + """
            .const .v4 .f32 v = {0f3F800000, 0f40000000, 0f40400000, 0f40800000};
            .global .v2 .u32 pairs[2] = {{1, 2}, {3}};
            .global .u8 sized[] = {7, 8, 9};
            .global .u16 grid[2][2] = {{1}, {2, 3}};
            .global .u16 flat[2][2] = {1, 2, 3};
            .global .attribute(.managed) .align 4 .u32 managed = 6;
            """).ToDictionary(v => v.Name);

        Assert.Equal((16L, 16), (vars["v"].Size, vars["v"].Align));
        Assert.Equal(Bytes(1f, 2f, 3f, 4f), vars["v"].Initializer);
        Assert.Equal((16L, 8), (vars["pairs"].Size, vars["pairs"].Align));
        Assert.Equal(Bytes(1u, 2u, 3u, 0u), vars["pairs"].Initializer);
        Assert.Equal((3L, 1), (vars["sized"].Size, vars["sized"].Align));
        Assert.Equal(Bytes<ushort>(1, 0, 2, 3), vars["grid"].Initializer);
        Assert.Equal(Bytes<ushort>(1, 2, 3, 0), vars["flat"].Initializer);
        Assert.Equal(Bytes(6u), vars["managed"].Initializer);
    }

    [Fact]
    public void A_large_variable_without_an_initializer_has_no_bytes_to_hold()
    {
        var big = Only(".global .align 16 .b8 arena[17179869184];");

        Assert.Equal(16L << 30, big.Size);
        Assert.Empty(big.Initializer);
    }

    [Theory]
    [InlineData(".global .u64 p = generic(x);", "module variable 'p'", "address of another symbol")]
    [InlineData(".global .u64 p = x + 8;", "module variable 'p'", "address of another symbol")]
    [InlineData(".global .u32 a[2] = {1, 2, 3};", "module variable 'a'", "3 values where 2 fit")]
    [InlineData(".global .u32 a[2][2] = {1, 2, 3, 4, 5};", "module variable 'a'", "5 values for 4 elements")]
    [InlineData(".global .u8 a = 256;", "module variable 'a'", "does not fit")]
    [InlineData(".global .u32 a = 1.5;", "module variable 'a'", "not an integer")]
    [InlineData(".global .f32 a = zz9;", "module variable 'a'", "address of another symbol")]
    [InlineData(".global .u32 a[];", "module variable 'a'", "needs an initializer list")]
    [InlineData(".global .u32 a[0];", "module variable 'a'", "array size of at least 1")]
    [InlineData(".global .u32 a[4] = 5;", "module variable 'a'", "single value")]
    [InlineData(".global .u32 a = {{1}};", "module variable 'a'", "more braces")]
    [InlineData(".global .u32 a = {1, 2;", "module variable 'a'", "never ends with ';'")]
    [InlineData(".global .u32 a b;", "module variable 'a'", "'b' follows its name")]
    [InlineData(".global .q32 a;", "module variable 'a'", "'.q32' is not a qualifier or type")]
    [InlineData(".global .align 3 .u32 a;", "module variable 'a'", "power of two")]
    [InlineData(".global .align 4 a;", "module variable 'a'", "no type")]
    [InlineData(".global .u32 ;", "a declaration", "names no variable")]
    [InlineData(".global .u32 a", "module variable 'a'", "never ends with ';'")]
    [InlineData(".global .u32 a = (1;", "module variable 'a'", "never ends with ';'")]
    [InlineData(".global .u32 a = {1 2};", "module variable 'a'", "'2' in its initializer")]
    [InlineData(".global .u32 a; .global .u32 a;", "module variable 'a'", "declared twice")]
    [InlineData(".global .b8 a[99999999999] = {1};", "module variable 'a'", "more than the 67108864 bytes")]
    [InlineData(".global .u64 a[4611686018427387904];", "module variable 'a'", "more than any memory holds")]
    public void A_declaration_that_cannot_be_read_is_refused_naming_it(string declaration, string named, string reason)
    {
        var e = Assert.Throws<PtxFormatException>(() => PtxVariables.Parse(Header + declaration));

        Assert.Contains(named, e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    /// <summary>nvcc 11.8 (Debian's nvidia-cuda-toolkit) with clang-14 as its host compiler, as the tests' PTX comes from.</summary>
    private static class Nvcc
    {
        private const string Install = "nvcc is not installed, and the module-variable tests read its PTX: install CUDA 11.8's compiler with `apt-get update && apt-get install -y nvidia-cuda-toolkit clang-14` (as root)";

        public static string CompileToPtx(string source)
        {
            var dir = Directory.CreateTempSubdirectory("gpupool-nvcc-");
            try
            {
                var cu = Path.Combine(dir.FullName, "vars.cu");
                var ptx = Path.Combine(dir.FullName, "vars.ptx");
                File.WriteAllText(cu, source);
                var (exitCode, output) = Run("nvcc", ["-ccbin", "clang-14", "-arch=sm_70", "-ptx", cu, "-o", ptx]);
                Assert.True(exitCode == 0, $"nvcc failed ({exitCode}): {output}");
                return File.ReadAllText(ptx);
            }
            finally
            {
                dir.Delete(recursive: true);
            }
        }

        private static (int ExitCode, string Output) Run(string program, string[] arguments)
        {
            var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            Process process;
            try
            {
                process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
            }
            catch (Win32Exception)
            {
                Assert.Fail(Install + ".");
                throw;
            }

            using (process)
            {
                var stdout = process.StandardOutput.ReadToEndAsync();
                var stderr = process.StandardError.ReadToEndAsync();
                if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
                {
                    process.Kill(entireProcessTree: true);
                    Assert.Fail($"{program} did not finish within 2 minutes");
                }

                return (process.ExitCode, stdout.Result + stderr.Result);
            }
        }
    }
}
