var r=/[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;function c(o){let t="";for(let e of String(o)){let n=e.codePointAt(0);e===`
`||e==="	"?t+=e:n<32?t+=`^${String.fromCharCode(n+64)}`:n===127?t+="^?":n>=128&&n<=159||r.test(e)?t+="�":t+=e}return t}function s(o){let t=c(o);return t.length<=16384?t:`${t.slice(0,16384)}… [${t.length-16384} more characters]`}export{c as a,s as b};
