<?php
// wpfarm lab: one legacy site seeded through WordPress's own API (no clicking, about a second a site).
//   php seed.php install|content ROOT DOMAIN TITLE THEME   (the admin password on stdin)
// install: wp_install (user admin), siteurl/home http://DOMAIN. content: posts and pages in utf8mb4 (emoji, RTL),
// media, the plugin legacy-hello activated, THEME switched to, options and postmeta with nested serialized arrays
// holding the old URL (string lengths change when it becomes https://), a second user.
// prefixed: wp-settings.php sets and unsets globals such as $theme while it loads
[, $seed_mode, $seed_root, $seed_domain, $seed_title, $seed_theme] = $argv;
$seed_pw = stream_get_contents( STDIN );
$_SERVER['HTTP_HOST']   = $seed_domain;
$_SERVER['SERVER_NAME'] = $seed_domain;
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_PORT'] = 80;
if ( 'install' === $seed_mode ) {
	define( 'WP_INSTALLING', true );
}
require "$seed_root/wp-load.php";
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$url = "http://$seed_domain";
if ( 'install' === $seed_mode ) {
	if ( ! is_blog_installed() ) {
		$r = wp_install( $seed_title, 'admin', "admin@$seed_domain", true, '', wp_slash( $seed_pw ) );
	}
	update_option( 'siteurl', $url );
	update_option( 'home', $url );
	echo "$seed_domain: installed\n";
	exit( 0 );
}
if ( 'legacy-classic' === $seed_theme ) {
	update_option( 'permalink_structure', '/%year%/%monthnum%/%postname%/' );
}
switch_theme( $seed_theme );
$act = activate_plugin( 'legacy-hello/legacy-hello.php' );
if ( is_wp_error( $act ) ) {
	fwrite( STDERR, $act->get_error_message() . "\n" );
	exit( 1 );
}
update_option( 'blogdescription', 'Un site de 2015 — موقع قديم' );
// media: a 1x1 PNG in uploads/2024/05, registered as an attachment
$png = base64_decode( 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==' );
$up  = wp_upload_bits( 'logo.png', null, $png, '2024/05' );
if ( ! empty( $up['error'] ) ) {
	fwrite( STDERR, $up['error'] . "\n" );
	exit( 1 );
}
$att = wp_insert_attachment(
	array( 'post_mime_type' => 'image/png', 'post_title' => 'Logo', 'post_status' => 'inherit', 'guid' => $up['url'] ),
	$up['file']
);
wp_update_attachment_metadata( $att, array( 'width' => 1, 'height' => 1, 'file' => '2024/05/logo.png', 'sizes' => array() ) );
$img   = $up['url'];
$posts = array(
	array( 'Bonjour le monde 😀🎉', "<p>Voir <a href=\"$url/about/\">la page</a> et <img src=\"$img\" alt=\"logo\"></p>" ),
	array( 'مرحبا بالعالم', "<p dir=\"rtl\">مرحبا بالعالم — שלום עולם <a href=\"$url/about/\">$url/about/</a></p>" ),
	array( 'Fusée 🚀 et accents éàüß', "<p>🚀🌍👩‍💻 un lien vers <a href=\"$url/?s=fus%C3%A9e\">la recherche</a>.</p>" ),
	array(
		'Bloc image',
		'<!-- wp:image {"url":"' . str_replace( '/', '\\/', $img ) . '"} -->'
			. '<figure class="wp-block-image"><img src="' . $img . '" alt=""/></figure><!-- /wp:image -->',
	),
);
for ( $i = 1; $i <= 8; $i++ ) {
	$posts[] = array(
		"Note n° $i ✍️",
		"<p>Note $i: <a href=\"$url/\">accueil</a>, texte ordinaire, " . str_repeat( 'lorem ipsum ', $i ) . '</p>',
	);
}
$ids = array();
foreach ( $posts as $i => [ $t, $c ] ) {
	$ids[] = wp_insert_post(
		wp_slash(
			array( 'post_title' => $t, 'post_content' => $c, 'post_status' => 'publish', 'post_date' => sprintf( '2024-05-%02d 10:00:00', $i + 1 ) )
		),
		true
	);
}
$page = fn( $t, $n, $c ) => wp_slash(
	array( 'post_title' => $t, 'post_name' => $n, 'post_type' => 'page', 'post_status' => 'publish', 'post_content' => $c )
);
wp_insert_post( $page( 'À propos 📖', 'about', "<p>Écrivez-nous : <a href=\"$url/contact/\">contact</a></p>" ) );
wp_insert_post( $page( 'Contact', 'contact', '<p>☎️ +33 1 23 45 67 89</p>' ) );
// nested serialized arrays with the old URL (a theme's or plugin's settings as WordPress stores them)
update_option(
	'legacy_settings',
	array(
		'logo'   => $img,
		'social' => array(
			'home'  => $url,
			'links' => array( "$url/about/", 'https://example.org/elsewhere' ),
			'deep'  => array(
				'deeper' => array( 'url' => "$url/wp-content/uploads/2024/05/logo.png", 'n' => 7, 'on' => true, 'label' => 'Ünïcødé 😀' ),
			),
		),
		'count'  => 3,
	)
);
$widget = array( 'title' => 'Liens', 'text' => "<a href=\"$url/contact/\">Contact</a>" );
update_option( 'widget_text', array( 2 => $widget, '_multiwidget' => 1 ) );
$gallery = array( 'images' => array( $img ), 'link' => array( 'href' => $url, 'nested' => array( "$url/x", 'y' ) ) );
update_post_meta( $ids[0], '_legacy_gallery', $gallery );
update_post_meta( $ids[1], '_legacy_note', 'plain text meta with ' . $url );
$ed = wp_insert_user(
	array(
		'user_login'   => 'redacteur',
		'user_pass'    => wp_generate_password( 20 ),
		'display_name' => 'Rédactrice 🌸',
		'role'         => 'editor',
		'user_url'     => $url,
	)
);
if ( is_wp_error( $ed ) ) {
	fwrite( STDERR, $ed->get_error_message() . "\n" );
	exit( 1 );
}
// the theme, once more at the end (checked: a site served with another theme would not be the shape wanted)
switch_theme( $seed_theme );
wp_cache_flush();
if ( get_option( 'stylesheet' ) !== $seed_theme || get_option( 'template' ) !== $seed_theme ) {
	fwrite( STDERR, "$seed_domain: theme $seed_theme not active: " . get_option( 'template' ) . '/' . get_option( 'stylesheet' ) . "\n" );
	exit( 1 );
}
echo "$seed_domain: " . count( $ids ) . " posts, 2 pages, 1 attachment, theme $seed_theme, plugin legacy-hello\n";
