-- Seed the demo shop: 1,000 products, 50,000 customers, 150,000 orders, ~300,000 order lines.
INSERT INTO products (sku, name, price, stock, attributes, tags)
SELECT 'SKU-' || lpad(g::text, 5, '0'),
       'Product ' || g,
       round((random() * 200 + 1)::numeric, 2),
       1000 + (random() * 9000)::int,
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue', 'black'])[1 + g % 4],
                          'weight_g', 100 + g % 900, 'dimensions', jsonb_build_array(g % 30, g % 20, g % 10)),
       ARRAY['tag' || g % 7, 'tag' || g % 11]
FROM generate_series(1, 1000) g;

INSERT INTO customers (email, full_name, country, created_at)
SELECT 'customer' || g || '@example.com',
       'Customer ' || g || ' ' || (ARRAY['Müller', 'Dubois', 'García', '山田', 'Ólafsdóttir'])[1 + g % 5],
       (ARRAY['DE', 'FR', 'ES', 'JP', 'IS', 'US'])[1 + g % 6],
       now() - (g % 1000) * interval '1 hour'
FROM generate_series(1, 50000) g;

INSERT INTO orders (customer_id, status, note, created_at)
SELECT 1 + (g * 7919) % 50000,
       (ARRAY['new', 'paid', 'shipped', 'cancelled']::order_status[])[1 + g % 4],
       CASE WHEN g % 10 = 0 THEN 'gift wrap, please' END,
       now() - (g % 5000) * interval '1 minute'
FROM generate_series(1, 150000) g;

INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price)
SELECT o.id, l, 1 + (o.id * 31 + l * 17) % 1000, 1 + (o.id + l) % 4, 9.99 + (o.id % 50)
FROM orders o, generate_series(1, 2) l;

UPDATE orders o SET total = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM order_lines GROUP BY order_id) s
WHERE s.order_id = o.id;

ANALYZE;
