self.onmessage=async({data:e})=>{let s=await e.text();self.postMessage({name:e.name,verdict:`${s.split(`
`).length-1} lines read`})};
